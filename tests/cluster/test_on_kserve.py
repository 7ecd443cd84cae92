"""ModelDeploy end to end on a cluster with KServe's own controller (``tests/support/cluster.py``):
the operator, run as ``modeldeploy operator`` against it, stages a model through a real Job
(the Job controller's pod, run by the node agent as the staging image would run it), writes the
InferenceService that KServe's manager reconciles into a predictor Deployment, whose pod the
node agent runs; KServe's status and the gateway's route acceptance make the InferenceService
Ready, and the ModelDeployment follows. Nothing plays KServe, the Job controller or the
scheduler here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from modeldeploy.controller import naming
from tests.runtime import graphs
from tests.support.cluster import (
    CHART_NAMESPACE,
    RELEASE,
    KServeCluster,
    through_gateway,
    wait_until,
)
from tests.support.processes import LocalStack

pytestmark = [pytest.mark.cluster]

NAMESPACE = "e2e"
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")


@pytest.fixture(scope="module")
def operator(kserve_cluster: KServeCluster) -> Iterator[LocalStack]:
    """The operator, watching ``e2e``, with the artifact store on the ``artifacts`` claim; the
    model on the ``models`` claim."""
    cluster = kserve_cluster
    cluster.claim(NAMESPACE, "models")
    cluster.claim(NAMESPACE, "artifacts", mode=0o777)  # the staging image's user writes there
    (cluster.pvc_root / "models" / "dtypes").mkdir(exist_ok=True)
    graphs.dtypes(cluster.pvc_root / "models" / "dtypes" / "model.onnx")
    stack = LocalStack(cluster.plane.kubeconfig, cluster.workdir / "operator", cluster.pvc_root)
    stack.operator("--artifact-store", "pvc://artifacts/store", namespaces=[NAMESPACE])
    try:
        yield stack
    finally:
        stack.stop()
        client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)


def _model_deployment(name: str) -> dict[str, Any]:
    return graphs.dtypes_deployment("pvc://models/dtypes/model.onnx", name, NAMESPACE,
                                    serving={"resources": {"cpu": "1", "memory": "1Gi"}})  # fmt: skip


def _conditions(api: Any, name: str) -> dict[str, dict[str, Any]]:
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(*MD[:2], NAMESPACE, MD[2],
                                                                      name)  # fmt: skip
    return {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}


def _report(cluster: KServeCluster, stack: LocalStack, name: str) -> str:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(NAMESPACE).items
    lines = [f"\nconditions: {json.dumps(_conditions(cluster.api, name))[:3000]}"]
    lines += [f"\n{p.metadata.name} {p.status.phase} {p.status.container_statuses}" for p in pods]
    for log in sorted((cluster.workdir / "node" / "pods").glob(f"{NAMESPACE}_*/*/*.log")):
        lines.append(f"\n--- {log.parent.parent.name}/{log.parent.name}/{log.name}\n"
                     f"{log.read_text(errors='replace')[-1500:]}")  # fmt: skip
    lines.append(f"\n--- operator\n{stack.processes[0].log_text()[-3000:]}")
    return "".join(lines)


def _infer(gateway: str, host: str, model: str) -> list[Any]:
    return graphs.infer_fp32(gateway, model, graphs.dtypes_inputs([-1.0, 2.0, -3.0, 4.0, -5.0, 6.0]),
                             host)  # fmt: skip


def test_a_model_deployment_is_staged_by_a_job_served_by_kserve_and_answers_at_both_urls(
    kserve_cluster: KServeCluster, operator: LocalStack
) -> None:
    cluster, api, name = kserve_cluster, kserve_cluster.api, "dtypes"
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        *MD[:2], NAMESPACE, MD[2], _model_deployment(name)
    )
    deadline = time.monotonic() + 240
    while _conditions(api, name).get("Ready", {}).get("status") != "True":
        assert time.monotonic() < deadline, f"not Ready{_report(cluster, operator, name)}"
        time.sleep(1)

    # The staging Job ran to completion through the Job controller and the node agent.
    jobs = client.BatchV1Api(api).list_namespaced_job(NAMESPACE).items
    assert [j.status.succeeded for j in jobs] == [1]
    status = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *MD[:2], NAMESPACE, MD[2], name
    )["status"]
    assert status["artifact"]["digest"].startswith("sha256:")

    # KServe's URL, through the gateway, by KServe's own HTTPRoute.
    isvc = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", name
    )
    expected = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    host = urlparse(isvc["status"]["url"]).netloc
    assert (
        through_gateway("KServe's URL", lambda: _infer(cluster.gateway.url, host, name)) == expected
    )
    # And the ModelDeployment's own URL, through its traffic route on the same Gateway.
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", naming.route_name(name)
    )
    assert route["status"]["parents"][0]["conditions"][0]["status"] == "True"
    ours = urlparse(status["url"]).netloc
    assert through_gateway("our URL", lambda: _infer(cluster.gateway.url, ours, name)) == expected


def _ready_condition(api: Any, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    found = client.CustomObjectsApi(api).get_namespaced_custom_object(*MD[:2], namespace, MD[2],
                                                                      name)  # fmt: skip
    conditions = (found.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def test_a_killed_predictor_process_is_restarted_and_the_model_deployment_is_ready_again(
    kserve_cluster: KServeCluster, operator: LocalStack
) -> None:
    """With no help from the operator: the kubelet's restart policy brings the container back,
    KServe sees its Deployment available again, and the operator reads that."""
    cluster, api = kserve_cluster, kserve_cluster.api
    wait_until("the ModelDeployment Ready", lambda: _ready_condition(api, "dtypes").get("status")
           == "True")  # fmt: skip
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(
        NAMESPACE, label_selector="serving.kserve.io/inferenceservice=dtypes"
    ).items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 1
    pod = running[0]
    process = cluster.agent.worker(NAMESPACE, pod.metadata.name).container("kserve-container")
    assert process.process is not None
    os.kill(process.process.pid, signal.SIGKILL)

    wait_until("the ModelDeployment not Ready", lambda: _ready_condition(api, "dtypes").get("status")
           == "False")  # fmt: skip
    wait_until("the ModelDeployment Ready again", lambda: _ready_condition(api, "dtypes").get(
        "status") == "True", timeout=180)  # fmt: skip
    again = core.read_namespaced_pod(pod.metadata.name, NAMESPACE)
    assert again.metadata.uid == pod.metadata.uid  # the same pod: restarted in place
    assert again.status.container_statuses[0].restart_count == 1
    isvc = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", "dtypes"
    )
    host = urlparse(isvc["status"]["url"]).netloc
    assert (
        through_gateway("the restarted pod", lambda: _infer(cluster.gateway.url, host, "dtypes"))[0]
        == 1.0
    )


def test_the_charts_operator_pod_reports_a_verb_taken_from_its_role_as_a_403_and_comes_back(
    on_kserve: KServeCluster,
) -> None:
    """``helm install``: the operator runs as the chart's pod with the chart's ServiceAccount.
    An administrator's narrower Role (no InferenceService ``patch``) refuses its server-side
    apply: a condition with the API server's answer, the pod not restarted; with the verb back,
    the next resync deploys through KServe."""
    cluster, api, namespace = on_kserve, on_kserve.api, "rbac"
    cluster.claim(namespace, "models")
    cluster.claim(namespace, "artifacts", mode=0o777)
    model = cluster.pvc_root / "models" / "dtypes" / "model.onnx"
    if not model.exists():
        model.parent.mkdir(exist_ok=True)
        graphs.dtypes(model)
    cluster.install_chart("pvc://artifacts/store", namespace)
    try:
        rbac = client.RbacAuthorizationV1Api(api)
        role = next(r for r in rbac.list_namespaced_role(namespace).items
                    if any("inferenceservices" in (rule.resources or []) for rule in r.rules))  # fmt: skip
        granted = api.sanitize_for_serialization(role)
        narrowed = json.loads(json.dumps(granted))
        rule = next(r for r in narrowed["rules"] if "inferenceservices" in r["resources"])
        rule["verbs"].remove("patch")
        rbac.replace_namespaced_role(role.metadata.name, namespace, narrowed)

        doc = _model_deployment("dtypes")
        doc["metadata"]["namespace"] = namespace
        client.CustomObjectsApi(api).create_namespaced_custom_object(*MD[:2], namespace, MD[2],
                                                                     doc)  # fmt: skip

        def deployed() -> dict[str, Any]:
            found = client.CustomObjectsApi(api).get_namespaced_custom_object(
                *MD[:2], namespace, MD[2], "dtypes"
            )
            conditions = (found.get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "Deployed"), {})  # fmt: skip

        refused = wait_until("the refusal", lambda: deployed().get("reason") == "InferenceServiceRejected"
                         and deployed(), timeout=180)  # fmt: skip
        assert "403" in refused["message"], refused
        assert "inferenceservices" in refused["message"], refused
        operator_pods = client.CoreV1Api(api).list_namespaced_pod(CHART_NAMESPACE).items
        assert [p.status.container_statuses[0].restart_count for p in operator_pods] == [0]

        restored = {**narrowed, "rules": granted["rules"]}
        restored["metadata"].pop("resourceVersion", None)
        rbac.replace_namespaced_role(role.metadata.name, namespace, restored)
        wait_until("Ready through KServe", lambda: _ready_condition(api, "dtypes", namespace).get(
            "status") == "True", timeout=180)  # fmt: skip
        assert deployed()["reason"] == "InferenceServiceApplied"
    finally:
        cluster.helm("uninstall", RELEASE, "-n", CHART_NAMESPACE, "--wait")
