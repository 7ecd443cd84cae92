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
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from modeldeploy.controller import naming
from tests.runtime import graphs
from tests.support.cluster import KServeCluster
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
    inputs = [{"name": f"in_{t.lower()}", "shape": [graphs.WIDTH], "dtype": t}
              for t in graphs.DTYPES]  # fmt: skip
    return {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"uri": "pvc://models/dtypes/model.onnx", "format": "onnx", "inputs": inputs},
            "serving": {"resources": {"cpu": "1", "memory": "1Gi"}},
        },
    }  # fmt: skip


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
    body = {"inputs": [{"name": "in_fp32", "shape": [1, graphs.WIDTH], "datatype": "FP32",
                        "data": [-1.0, 2.0, -3.0, 4.0, -5.0, 6.0]}] + [
        {"name": f"in_{t.lower()}", "shape": [1, graphs.WIDTH], "datatype": t,
         "data": [True] * graphs.WIDTH if t == "BOOL" else [1] * graphs.WIDTH}
        for t in graphs.DTYPES if t != "FP32"]}  # fmt: skip
    request = urllib.request.Request(
        f"{gateway}/v2/models/{model}/infer", json.dumps(body).encode(),
        {"Content-Type": "application/json", "Host": host},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        outputs = json.load(response)["outputs"]
    return list(next(o for o in outputs if o["datatype"] == "FP32")["data"])


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
    assert _infer(cluster.gateway.url, urlparse(isvc["status"]["url"]).netloc, name) == expected
    # And the ModelDeployment's own URL, through its traffic route on the same Gateway.
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", naming.route_name(name)
    )
    assert route["status"]["parents"][0]["conditions"][0]["status"] == "True"
    assert _infer(cluster.gateway.url, urlparse(status["url"]).netloc, name) == expected
