"""KServe's own controller and webhooks take what the operator builds: every example's
InferenceService is admitted by KServe's defaulting and validating webhooks and reconciled by
KServe's manager into the predictor Deployment, Service and HTTPRoute a cluster would run.

The InferenceServices are the operator's own (``build_inference_service``, as ``plan`` calls it,
owned by a ModelDeployment that exists), applied with the operator's field manager. KServe here
is the real manager at the pinned version (``tests/support/kserve.py``), in Standard mode with
Gateway API on; Knative Serving cannot run here, so an example in Knative mode is deployed in
Standard mode, scaling on CPU. No kube-controller-manager runs in this cluster: the Deployments KServe writes are
checked as written, not run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.serving import DeploymentMode
from modeldeploy.controller import naming
from modeldeploy.controller.inference_service import (
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    ServingRuntimeRef,
    build_inference_service,
)
from modeldeploy.controller.serving_state import isvc_readiness
from tests.support import Assets, ControlPlane
from tests.support.controlplane import REPO_ROOT
from tests.support.kserve import KServe, config_dir

pytestmark = [pytest.mark.cluster]

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
OUR_RUNTIME = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


@pytest.fixture(scope="module")
def kserve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Any]]:
    """A control plane of its own with KServe's manager: its webhooks refuse every
    InferenceService write while it is down, so it never shares the suite's cluster."""
    work = tmp_path_factory.mktemp("kserve")
    plane = ControlPlane(work / "plane", Assets.provide())
    plane.start()
    manager = KServe(plane, work / "kserve")
    try:
        manager.start()
        for runtime in (OUR_RUNTIME, config_dir(plane) / "kserve-tritonserver.yaml"):
            plane.kubectl("apply", "--server-side", "-f", str(runtime))
        yield plane, config.new_client_from_config(config_file=str(plane.kubeconfig))
    finally:
        manager.stop()
        plane.stop()


def runtime_image(name: str, gpu: bool, plane: ControlPlane) -> str:
    """The image KServe must run for runtime ``name``: its container's, or for ours with GPUs
    the one its annotation names (the operator sets it on the predictor)."""
    path = OUR_RUNTIME if name == "modeldeploy-onnx" else config_dir(plane) / f"{name}.yaml"
    runtime = yaml.safe_load(path.read_text())
    if gpu and name == "modeldeploy-onnx":
        return str(runtime["metadata"]["annotations"]["modeldeploy.io/gpu-image"])
    return str(runtime["spec"]["containers"][0]["image"])


def wait_for(what: str, read: Any, timeout: float = 90.0) -> Any:
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
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.5)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_kserve_admits_and_deploys_the_operators_inference_service_for(
    example: Path, kserve: tuple[ControlPlane, Any]
) -> None:
    plane, api = kserve
    doc = yaml.safe_load(example.read_text())
    name = doc["metadata"]["name"]
    namespace = f"ex-{example.stem}"[:63]
    plane.kubectl("create", "namespace", namespace)
    doc["metadata"]["namespace"] = namespace
    serving_doc = doc["spec"].setdefault("serving", {})
    if serving_doc.get("deploymentMode") == "Knative":
        # Knative Serving cannot run here: the same example in Standard mode, which scales on
        # CPU (concurrency and rps are Knative's metrics).
        serving_doc["deploymentMode"] = "Standard"
        scaling = serving_doc.get("scaling") or {}
        if scaling.get("metric") in ("concurrency", "rps"):
            scaling.update(metric="cpu", target=80)
    custom = client.CustomObjectsApi(api)
    owner = custom.create_namespaced_custom_object(*MD[:2], namespace, MD[2], doc)
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
        deployment, owner["metadata"]["uid"], f"pvc://artifacts/{namespace}/{name}-0123456789",
        ref, revision="0123456789",
    )  # fmt: skip

    # Admitted by KServe's webhooks (failurePolicy Fail: a refusal or an unreachable webhook
    # fails the apply), as the operator applies it.
    applied = plane.kubectl(
        "apply", "--server-side", f"--field-manager={naming.FIELD_MANAGER}", "-n", namespace,
        "-f", "-", "-o", "json", input=json.dumps(isvc), check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    stored = json.loads(applied.stdout)
    assert stored["spec"]["predictor"]["model"]["runtime"] == serving.runtime

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
    pod = found.spec.template.spec
    container = next(c for c in pod.containers if c.name == "kserve-container")
    gpu = bool(serving.resources.gpu)
    assert container.image == runtime_image(serving.runtime, gpu, plane)
    model = isvc["spec"]["predictor"]["model"]
    assert container.resources.limits == model["resources"]["limits"]
    assert container.readiness_probe.http_get.path == f"/v2/models/{name}/ready"
    if gpu:
        assert container.resources.limits[GPU_RESOURCE] == str(serving.resources.gpu)
        assert pod.node_selector == {GPU_PRODUCT_LABEL: serving.resources.gpu_type}
        assert any(t.key == GPU_RESOURCE for t in pod.tolerations or [])
    labels = found.spec.template.metadata.labels
    assert labels[naming.REVISION_LABEL] == "0123456789"
    wait_for(
        f"Service {predictor}",
        lambda: client.CoreV1Api(api).read_namespaced_service(predictor, namespace),
    )

    # And its status, as far as KServe gets without pods: the predictor not ready yet, so no
    # routes (KServe writes its HTTPRoutes, named after the InferenceService, only then).
    def isvc_status() -> dict[str, Any]:
        got = custom.get_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
        )
        return dict(got.get("status") or {})

    conditions = wait_for("KServe's conditions", lambda: isvc_status().get("conditions"))
    assert {c["type"]: c["status"] for c in conditions}.items() >= {
        "PredictorReady": "False", "Ready": "False"}.items()  # fmt: skip
    # The operator reads KServe's own status as not ready, with KServe's reason.
    live = custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", namespace, "inferenceservices", name
    )
    assert isvc_readiness(live)[0] is False
