"""KServe's own controller and webhooks take what the operator builds: every example's
InferenceService is admitted by KServe's defaulting and validating webhooks and reconciled by
KServe's manager into the predictor Deployment, Service and HTTPRoute a cluster would run.

The InferenceServices are the operator's own (``build_inference_service``, as ``plan`` calls it,
owned by a ModelDeployment that exists), applied with the operator's field manager. KServe here
is the real manager at the pinned version (``tests/support/kserve.py``), in Standard mode with
Gateway API on; Knative Serving cannot run here, so an example in Knative mode is deployed in
Standard mode, scaling on CPU. The cluster is ``tests/support/cluster.py``: kube-controller-
manager and kube-scheduler turn KServe's Deployments into pods on a node whose pods the node
agent runs (``tests/support/kubelet``), and Traefik (``tests/support/traefik.py``) accepts KServe's
HTTPRoutes and routes by them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.serving import DeploymentMode
from modeldeploy.api.validation import parse
from modeldeploy.controller import naming
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    ServingRuntimeRef,
    build_inference_service,
)
from modeldeploy.controller.serving_state import isvc_readiness
from modeldeploy.controller.staging_job import build_staging_job
from modeldeploy.staging.stage import stage
from tests.runtime import graphs
from tests.support import ControlPlane
from tests.support.cluster import OUR_RUNTIME, KServeCluster, through_gateway
from tests.support.controlplane import REPO_ROOT
from tests.support.kserve import config_dir
from tests.support.s3 import S3Server

pytestmark = [pytest.mark.cluster]

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")


@pytest.fixture
def kserve(on_kserve: KServeCluster) -> KServeCluster:
    return on_kserve


def runtime_image(name: str, gpu: bool, plane: ControlPlane) -> str:
    """The image KServe must run for runtime ``name``: its container's, or for ours with GPUs
    the one its annotation names (the operator sets it on the predictor)."""
    path = OUR_RUNTIME if name == "modeldeploy-onnx" else config_dir(plane) / f"{name}.yaml"
    runtime = yaml.safe_load(path.read_text())
    if gpu and name == "modeldeploy-onnx":
        return str(runtime["metadata"]["annotations"]["modeldeploy.io/gpu-image"])
    return str(runtime["spec"]["containers"][0]["image"])


def wait_for(what: str, read: Any, timeout: float = 90.0, explain: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = read()
        except ApiException as err:
            if err.status != 404:
                raise
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s{explain() if explain else ''}")
        time.sleep(0.5)


@dataclass(frozen=True)
class Deployed:
    namespace: str
    name: str
    deployment: ModelDeployment
    isvc: dict[str, Any]
    """The InferenceService the operator built, as sent."""


def deploy_example(example: Path, cluster: KServeCluster, namespace: str) -> Deployed:
    """The example's ModelDeployment, with an artifact URI nothing was staged at."""
    doc = yaml.safe_load(example.read_text())
    store = cluster.claim(namespace, "artifacts")
    uri = f"pvc://artifacts/{namespace}/{doc['metadata']['name']}-0123456789"
    (store / namespace).mkdir(mode=0o755, exist_ok=True)
    return deploy(doc, cluster, namespace, uri)


def deploy(
    doc: dict[str, Any],
    cluster: KServeCluster,
    namespace: str,
    storage_uri: str,
    service_account: str | None = None,
) -> Deployed:
    """Create the ModelDeployment, and apply the InferenceService the operator builds for it
    (serving ``storage_uri``), owned by it, with the operator's field manager. Admitted by
    KServe's webhooks, or this fails (their failurePolicy is Fail: a refusal or an unreachable
    webhook fails it)."""
    plane, api = cluster.plane, cluster.api
    name = doc["metadata"]["name"]
    doc["metadata"]["namespace"] = namespace
    serving_doc = doc["spec"].setdefault("serving", {})
    if serving_doc.get("deploymentMode") == "Knative":
        # Knative Serving cannot run here: the same example in Standard mode, which scales on
        # CPU (concurrency and rps are Knative's metrics).
        serving_doc["deploymentMode"] = "Standard"
        scaling = serving_doc.get("scaling") or {}
        if scaling.get("metric") in ("concurrency", "rps"):
            scaling.update(metric="cpu", target=80)
    owner = client.CustomObjectsApi(api).create_namespaced_custom_object(
        *MD[:2], namespace, MD[2], doc
    )
    deployment = ModelDeployment.model_validate(
        {"metadata": {"name": name, "namespace": namespace}, "spec": owner["spec"]}
    )
    assert deployment.spec.serving.deployment_mode == DeploymentMode.STANDARD
    serving = deployment.spec.serving
    runtime = yaml.safe_load(OUR_RUNTIME.read_text())
    gpu_image = runtime["metadata"]["annotations"]["modeldeploy.io/gpu-image"]
    ref = ServingRuntimeRef(serving.runtime, "ClusterServingRuntime",
                            gpu_image if serving.runtime == "modeldeploy-onnx" else None)  # fmt: skip
    isvc = build_inference_service(
        deployment, owner["metadata"]["uid"], storage_uri, ref, revision="0123456789"
    )
    if service_account:  # KServe's storage credentials (not set by the operator today)
        isvc["spec"]["predictor"]["serviceAccountName"] = service_account
    applied = plane.kubectl(
        "apply", "--server-side", f"--field-manager={naming.FIELD_MANAGER}", "-n", namespace,
        "-f", "-", "-o", "json", input=json.dumps(isvc), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    stored = json.loads(applied.stdout)
    assert stored["spec"]["predictor"]["model"]["runtime"] == serving.runtime
    return Deployed(namespace, name, deployment, isvc)


def predictor_pods(api: Any, deployed: Deployed) -> list[Any]:
    selector = f"serving.kserve.io/inferenceservice={deployed.name}"
    return list(
        client.CoreV1Api(api).list_namespaced_pod(deployed.namespace, label_selector=selector).items
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_kserve_admits_deploys_and_schedules_the_operators_inference_service_for(
    example: Path, kserve: KServeCluster
) -> None:
    plane, api = kserve.plane, kserve.api
    deployed = deploy_example(example, kserve, f"ex-{example.stem}"[:63])
    name, namespace, serving = deployed.name, deployed.namespace, deployed.deployment.spec.serving

    # KServe's reconcile: the predictor Deployment, with our runtime's container as KServe
    # resolved it, and what the operator asked for.
    apps = client.AppsV1Api(api)
    predictor = naming.predictor_service(name)
    found = wait_for(
        f"Deployment {predictor}", lambda: apps.read_namespaced_deployment(predictor, namespace)
    )
    assert [(r.kind, r.name) for r in found.metadata.owner_references] == [
        ("InferenceService", name)
    ]
    template = found.spec.template.spec
    container = next(c for c in template.containers if c.name == "kserve-container")
    gpu = bool(serving.resources.gpu)
    assert container.image == runtime_image(serving.runtime, gpu, plane)
    model = deployed.isvc["spec"]["predictor"]["model"]
    assert container.resources.limits == model["resources"]["limits"]
    assert container.readiness_probe.http_get.path == f"/v2/models/{name}/ready"
    if gpu:
        assert container.resources.limits[GPU_RESOURCE] == str(serving.resources.gpu)
        assert template.node_selector == {GPU_PRODUCT_LABEL: serving.resources.gpu_type}
        assert any(t.key == GPU_RESOURCE for t in template.tolerations or [])
    labels = found.spec.template.metadata.labels
    assert labels[naming.REVISION_LABEL] == "0123456789"
    wait_for(
        f"Service {predictor}",
        lambda: client.CoreV1Api(api).read_namespaced_service(predictor, namespace),
    )

    # The ReplicaSet controller's pod, through KServe's pod webhook (the artifact's claim
    # mounted at /mnt/models), bound by the scheduler to the node: a GPU example on its GPUs.
    pods = wait_for(
        "a predictor pod bound to the node",
        lambda: [p for p in predictor_pods(api, deployed) if p.spec.node_name],
        explain=lambda: "".join(
            f"\n{p.metadata.name}: {[(c.type, c.reason, c.message) for c in p.status.conditions or []]}"
            for p in predictor_pods(api, deployed)
        ),
    )
    pod = pods[0].spec
    assert pod.node_name == kserve.node.name
    claims = {v.name: v.persistent_volume_claim.claim_name for v in pod.volumes or []
              if v.persistent_volume_claim}  # fmt: skip
    assert "artifacts" in claims.values(), pod.volumes
    served = next(c for c in pod.containers if c.name == "kserve-container")
    mounts = {m.mount_path: m.name for m in served.volume_mounts or []}
    assert claims.get(mounts.get("/mnt/models", "")) == "artifacts", served.volume_mounts

    # And KServe's status: nothing was staged at the URI, so the runtime cannot load a model
    # (Triton's image is not one the node agent runs) and the predictor is not ready, so no
    # routes yet (KServe writes its HTTPRoutes, named after the InferenceService, only then).
    custom = client.CustomObjectsApi(api)

    def live() -> dict[str, Any]:
        got: dict[str, Any] = custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        return got

    conditions = wait_for("KServe's conditions", lambda: (live().get("status") or {}).get(
        "conditions"))  # fmt: skip
    assert {c["type"]: c["status"] for c in conditions}.items() >= {
        "PredictorReady": "False", "Ready": "False"}.items()  # fmt: skip
    # The operator reads KServe's own status as not ready.
    assert isvc_readiness(live())[0] is False


def test_deleting_a_model_deployment_lets_the_garbage_collector_remove_its_jobs_and_services(
    kserve: KServeCluster,
) -> None:
    _plane, api = kserve.plane, kserve.api
    deployed = deploy_example(EXAMPLES[0], kserve, "gc")
    name, namespace = deployed.name, deployed.namespace
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    predictor = naming.predictor_service(name)
    wait_for("a predictor pod", lambda: predictor_pods(api, deployed))
    wait_for(f"Service {predictor}", lambda: core.read_namespaced_service(predictor, namespace))
    # The staging Job the operator makes for it, owned by it too, and the Job controller's pod.
    uid = deployed.isvc["metadata"]["ownerReferences"][0]["uid"]
    store = OperatorConfig(artifact_store="pvc://artifacts/store")
    job = build_staging_job(deployed.deployment, uid, store)
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(namespace, job)
    job_name = job["metadata"]["name"]

    def job_pods() -> list[Any]:
        selector = f"batch.kubernetes.io/job-name={job_name}"
        return list(core.list_namespaced_pod(namespace, label_selector=selector).items)

    wait_for(f"Job {job_name}'s pod", job_pods)

    client.CustomObjectsApi(api).delete_namespaced_custom_object(*MD[:2], namespace, MD[2], name)

    def gone(read: Any) -> bool:
        try:
            read()
        except ApiException as err:
            if err.status == 404:
                return True
            raise
        return False

    custom = client.CustomObjectsApi(api)
    wait_for("the InferenceService deleted", lambda: gone(lambda: custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name)))  # fmt: skip
    wait_for("the Deployment deleted",
             lambda: gone(lambda: apps.read_namespaced_deployment(predictor, namespace)))  # fmt: skip
    wait_for("the Service deleted",
             lambda: gone(lambda: core.read_namespaced_service(predictor, namespace)))  # fmt: skip
    wait_for(f"Job {job_name} deleted",
             lambda: gone(lambda: batch.read_namespaced_job(job_name, namespace)))  # fmt: skip
    wait_for("the ReplicaSets deleted",
             lambda: not apps.list_namespaced_replica_set(namespace).items)  # fmt: skip
    # Its pods: stopped by the node agent within their grace period, which then confirms the
    # deletion, as the kubelet does.
    wait_for("the pods deleted", lambda: not [*predictor_pods(api, deployed), *job_pods()])


def _serve_dtypes(kserve: KServeCluster) -> Deployed:
    """The ``graphs.dtypes`` model, staged by the staging code into the artifact volume, served
    through KServe: the ModelDeployment the artifact was staged for, its InferenceService."""
    namespace = "served"
    root = kserve.claim(namespace, "artifacts")
    source = graphs.dtypes(kserve.workdir / "dtypes.onnx")
    doc = graphs.dtypes_deployment(f"file://{source}")
    result = stage(parse(doc), str(root / namespace))
    staged = Path(result.uri.removeprefix("file://")).relative_to(root)
    return deploy(doc, kserve, namespace, f"pvc://artifacts/{staged}")


def _kserve_status(api: Any, deployed: Deployed) -> dict[str, Any]:
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", deployed.namespace, "inferenceservices", deployed.name
    )
    return dict(found.get("status") or {})


def _kserve_condition(api: Any, deployed: Deployed, kind: str) -> str | None:
    conditions = _kserve_status(api, deployed).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == kind), None)


def _infer_fp32(base: str, model: str, host: str | None = None) -> list[float]:
    values = [-1.5, 2.0, -3.25, 4.0, -0.5, 6.0]
    body = {"inputs": [{"name": f"in_{t.lower()}", "shape": [1, graphs.WIDTH], "datatype": t,
                        "data": [int(abs(v)) if t not in ("FP32", "FP16", "BOOL") else
                                 (v > 0 if t == "BOOL" else v) for v in values]}
                       for t in graphs.DTYPES]}  # fmt: skip
    headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
    request = urllib.request.Request(
        f"{base}/v2/models/{model}/infer", json.dumps(body).encode(), headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        outputs = json.load(response)["outputs"]
    return list(next(o for o in outputs if o["datatype"] == "FP32")["data"])


def test_the_predictor_kserve_generated_runs_on_the_node_and_answers_at_the_pod_ip_its_endpoints_list(
    kserve: KServeCluster,
) -> None:
    api = kserve.api
    deployed = _serve_dtypes(kserve)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    predictor = naming.predictor_service(deployed.name)
    ready = wait_for(
        "the predictor Deployment available",
        lambda: (apps.read_namespaced_deployment(predictor, deployed.namespace).status
                 .available_replicas),
        timeout=180, explain=lambda: _pod_report(kserve, deployed),
    )  # fmt: skip
    assert ready == 1
    # KServe read the Deployment as ready: its predictor is, whatever the routes say.
    wait_for("KServe's PredictorReady", lambda: _kserve_condition(api, deployed, "PredictorReady")
             == "True")  # fmt: skip

    # The pod ran as the runtime's user, with its IP on the node's pod network, listed by the
    # EndpointSlice controller for the predictor Service; the model answers there.
    pod = next(p for p in predictor_pods(api, deployed) if p.status.phase == "Running")
    assert ipaddress.ip_address(pod.status.pod_ip) in kserve.agent.network.subnet
    slices = wait_for("the predictor's ready endpoints", lambda: [
        e for s in client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            deployed.namespace, label_selector=f"kubernetes.io/service-name={predictor}").items
        for e in s.endpoints or [] if e.conditions.ready])  # fmt: skip
    assert [e.addresses[0] for e in slices] == [pod.status.pod_ip]
    pod_url = f"http://{pod.status.pod_ip}:8080"
    assert _infer_fp32(pod_url, deployed.name) == [1.5, 2.0, 3.25, 4.0, 0.5, 6.0]

    # KServe wrote its HTTPRoutes once the predictor was ready; the gateway accepted them, so
    # KServe calls the InferenceService Ready, with its URL; the model answers at that URL.
    wait_for("KServe's Ready", lambda: _kserve_condition(api, deployed, "Ready") == "True")
    url = _kserve_status(api, deployed)["url"]
    host = urlparse(url).netloc
    assert (
        through_gateway(
            "KServe's URL", lambda: _infer_fp32(kserve.gateway.url, deployed.name, host)
        )[1]
        == 2.0
    )
    worker = kserve.agent.worker(deployed.namespace, pod.metadata.name)
    pid = worker.container("kserve-container").process
    assert pid is not None
    ids = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid.pid}/status").read_text().splitlines()
    )
    assert ids["Uid"].split() == ["1000"] * 4
    assert ids["Gid"].split() == ["1000"] * 4

    # Recovery: the process killed, the kubelet's restart policy (Always) restarts the
    # container, its probes make it ready again, and the Deployment and KServe follow, with no
    # help from anyone.
    os.kill(pid.pid, signal.SIGKILL)
    wait_for("the predictor not ready", lambda: not (
        core.read_namespaced_pod(pod.metadata.name, deployed.namespace).status
        .container_statuses[0].ready))  # fmt: skip
    restarted = wait_for(
        "the container restarted and ready",
        lambda: [s for s in core.read_namespaced_pod(pod.metadata.name, deployed.namespace)
                 .status.container_statuses if s.restart_count == 1 and s.ready],
        timeout=120, explain=lambda: _pod_report(kserve, deployed),
    )  # fmt: skip
    assert restarted[0].last_state.terminated.exit_code == 128 + signal.SIGKILL
    wait_for("the Deployment available again", lambda: (
        apps.read_namespaced_deployment(predictor, deployed.namespace).status
        .available_replicas) == 1)  # fmt: skip
    assert _infer_fp32(pod_url, deployed.name)[0] == 1.5
    wait_for("KServe's Ready again", lambda: _kserve_condition(api, deployed, "Ready") == "True")
    assert (
        through_gateway(
            "KServe's URL again", lambda: _infer_fp32(kserve.gateway.url, deployed.name, host)
        )[2]
        == 3.25
    )


def _pod_report(kserve: KServeCluster, deployed: Deployed) -> str:
    """The predictor pods' states and their containers' logs, for a failure's message."""
    lines = []
    for pod in predictor_pods(kserve.api, deployed):
        lines.append(
            f"\n{pod.metadata.name} {pod.status.phase} init "
            f"{pod.status.init_container_statuses} {pod.status.container_statuses}"
        )
        for log in sorted(
            (kserve.workdir / "node" / "pods").glob(f"*{pod.metadata.name}*/*/*.log")
        ):
            lines.append(f"\n--- {log}\n{log.read_text(errors='replace')[-2000:]}")
    return "".join(lines)


def test_an_s3_model_is_fetched_by_kserves_storage_initializer_before_the_predictor_starts(
    kserve: KServeCluster,
) -> None:
    """KServe's pod webhook injects its storage-initializer for an ``s3://`` URI, with the
    credentials of the predictor's ServiceAccount (KServe's own scheme: a Secret with AWS keys
    and ``serving.kserve.io/s3-*`` annotations). The node agent runs it first, as
    kserve-storage; the runtime then serves what it downloaded."""
    api, namespace = kserve.api, "s3-served"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    server = S3Server(kserve.workdir / "s3", kserve.plane.assets, host=kserve.agent.network.gateway)
    server.start()
    try:
        source = graphs.dtypes(kserve.workdir / "s3-dtypes.onnx")
        doc = graphs.dtypes_deployment(f"file://{source}")
        staged = Path(
            stage(parse(doc), str(kserve.workdir / "s3-stage")).uri.removeprefix("file://")
        )
        bucket = server.client()
        bucket.create_bucket(Bucket="models")
        for path in staged.rglob("*"):
            if path.is_file():
                bucket.upload_file(str(path), "models", f"dtypes/{path.relative_to(staged)}")
        core.create_namespaced_secret(namespace, {
            "metadata": {"name": "s3-credentials", "annotations": {
                "serving.kserve.io/s3-endpoint": server.endpoint.removeprefix("http://"),
                "serving.kserve.io/s3-usehttps": "0", "serving.kserve.io/s3-region": "us-east-1"}},
            "stringData": {"AWS_ACCESS_KEY_ID": server.access_key,
                           "AWS_SECRET_ACCESS_KEY": server.secret_key}})  # fmt: skip
        core.create_namespaced_service_account(namespace, {
            "metadata": {"name": "models"}, "secrets": [{"name": "s3-credentials"}]})  # fmt: skip
        deployed = deploy(doc, kserve, namespace, "s3://models/dtypes", service_account="models")

        apps = client.AppsV1Api(api)
        predictor = naming.predictor_service(deployed.name)
        wait_for("the predictor available", lambda: apps.read_namespaced_deployment(
            predictor, namespace).status.available_replicas, timeout=90,
            explain=lambda: _pod_report(kserve, deployed))  # fmt: skip
        pod = next(p for p in predictor_pods(api, deployed) if p.status.phase == "Running")
        init = {s.name: s for s in pod.status.init_container_statuses or []}
        assert init["storage-initializer"].state.terminated.exit_code == 0
        assert pod.spec.init_containers[0].image.startswith("kserve/storage-initializer")
        assert _infer_fp32(f"http://{pod.status.pod_ip}:8080", deployed.name)[3] == 4.0
    finally:
        server.stop()
