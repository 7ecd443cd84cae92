"""A Standard-mode canary on KServe 0.20's own terms, on the KServe cluster
(``tests/support/cluster.py``): the operator finds ``spec.canary`` in the InferenceService schema
the API server publishes, runs the candidate as ``spec.canary[0]`` of the one InferenceService,
and splits the ModelDeployment's host between the two predictors' Services with its route.
KServe's manager makes the canary's Deployment and Service and reports it in
``status.canaryStatuses``; the node agent runs its pods; requests cross the gateway to them.

The two versions are told apart by their answers: stable's FP32 output is ``Abs(x)``, the
candidate's ``Relu(x)`` (0 where x is negative).

Live golden parity is off here: the operator runs outside the cluster, and this cluster has no
DNS for the canary's ``<svc>.<ns>.svc.cluster.local`` URL (docs/testing.md#the-kserve-cluster).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modeldeploy.rollout_control import describe
from tests.runtime import graphs
from tests.support.cluster import KServeCluster, wait_until
from tests.support.processes import LocalStack

pytestmark = [pytest.mark.cluster]

NAMESPACE = "rollout"
NAME = "split"
HOST = f"{NAME}.{NAMESPACE}.example.com"
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
STEPS = (10, 50, 90)
SAMPLE = 1000
TOLERANCE = 4
"""Percentage points: the canary's share of SAMPLE requests against the step's weight."""
ABS, RELU = "pvc://models/abs/model.onnx", "pvc://models/relu/model.onnx"


@pytest.fixture(scope="module")
def operator(kserve_cluster: KServeCluster) -> Iterator[LocalStack]:
    """The operator on the KServe cluster, deciding for itself which canary KServe supports."""
    cluster = kserve_cluster
    cluster.claim(NAMESPACE, "models")
    cluster.claim(NAMESPACE, "artifacts", mode=0o777)
    for folder, op in (("abs", "Abs"), ("relu", "Relu")):
        (cluster.pvc_root / "models" / folder).mkdir(exist_ok=True)
        graphs.dtypes(cluster.pvc_root / "models" / folder / "model.onnx", fp32_op=op)
    stack = LocalStack(cluster.plane.kubeconfig, cluster.workdir / "canary-operator",
                       cluster.pvc_root)  # fmt: skip
    stack.operator("--artifact-store", "pvc://artifacts/store", namespaces=[NAMESPACE],
                   env={"MODELDEPLOY_KSERVE_CANARY": "auto"})  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()
        client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)


def _infer(gateway: str) -> str:
    """Which version answered one request through the gateway: "abs" or "relu"."""
    body = {"inputs": [{"name": f"in_{t.lower()}", "shape": [1, graphs.WIDTH], "datatype": t,
                        "data": [True] * graphs.WIDTH if t == "BOOL" else [-1] * graphs.WIDTH}
                       for t in graphs.DTYPES]}  # fmt: skip
    request = urllib.request.Request(
        f"{gateway}/v2/models/{NAME}/infer", json.dumps(body).encode(),
        {"Content-Type": "application/json", "Host": HOST},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        outputs = json.load(response)["outputs"]
    fp32 = next(o for o in outputs if o["datatype"] == "FP32")["data"]
    return "abs" if fp32[0] == 1.0 else "relu"


class ClosedLoop:
    """One client sending request after request, each as soon as the last was answered; every
    outcome counted (an HTTP status other than 200, or no answer, is a failure)."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers[_infer(self.gateway)] += 1
            except (urllib.error.URLError, OSError, ValueError) as err:
                self.failures.append(f"{time.strftime('%X')} {err}")

    def __enter__(self) -> ClosedLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def reporting(cluster: KServeCluster, stack: LocalStack) -> Iterator[None]:
    """A failed assertion carries what the cluster looked like: the ModelDeployment's status,
    the InferenceService, the pods and the operator's log."""
    try:
        yield
    except AssertionError as err:
        api = cluster.api
        lines = [str(err), f"status: {json.dumps(_md(api).get('status'))[:3000]}"]
        with contextlib.suppress(client.ApiException):
            found = _isvc(api)
            lines.append(
                f"isvc: {json.dumps({k: found.get(k) for k in ('spec', 'status')})[:4000]}"
            )
        pods = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE).items
        lines += [f"{p.metadata.name} {p.status.phase} {p.metadata.labels}" for p in pods]
        lines.append(f"--- operator\n{stack.processes[0].log_text()[-4000:]}")
        raise AssertionError("\n".join(lines)) from err


def _md(api: Any) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *MD[:2], NAMESPACE, MD[2], NAME
    )
    return found


def _isvc(api: Any) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *ISVC[:2], NAMESPACE, ISVC[2], NAME
    )
    return found


def _pods(api: Any, component: str) -> dict[str, str]:
    """Running pods of KServe's predictor Deployment ``component``: name → uid."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"app=isvc.{component}"
    )
    return {p.metadata.name: p.metadata.uid for p in pods.items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp}  # fmt: skip


def _at_step(api: Any, step: int, weight: int) -> bool:
    status = _md(api).get("status") or {}
    rollout = status.get("rollout") or {}
    return (
        rollout.get("phase") == "Progressing"
        and rollout.get("step") == step
        and bool(rollout.get("stepStartedAt"))
        and (status.get("traffic") or {}).get("canary") == weight
    )


def _phase(api: Any) -> str | None:
    return ((_md(api).get("status") or {}).get("rollout") or {}).get("phase")


def _annotate(api: Any, key: str, value: str) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *MD[:2], NAMESPACE, MD[2], NAME, {"metadata": {"annotations": {key: value}}}
    )


def _share(gateway: str, version: str) -> float:
    answers = Counter(_infer(gateway) for _ in range(SAMPLE))
    return 100 * answers[version] / SAMPLE


def _gone(api: Any, kind: str, name: str) -> bool:
    read = {"Deployment": client.AppsV1Api(api).read_namespaced_deployment,
            "Service": client.CoreV1Api(api).read_namespaced_service}[kind]  # fmt: skip
    try:
        read(name, NAMESPACE)
    except client.ApiException as err:
        return err.status == 404
    return False


def test_a_canary_walks_kserves_spec_canary_through_the_gateway_and_is_promoted_by_rename(
    kserve_cluster: KServeCluster, operator: LocalStack
) -> None:
    with reporting(kserve_cluster, operator):
        _walk_and_promote(kserve_cluster)


def _walk_and_promote(cluster: KServeCluster) -> None:
    api, gateway = cluster.api, cluster.gateway.url
    rollout = {"steps": [{"weight": w, "pause": "1h"} for w in STEPS],
               "analysis": {"liveParity": False}}  # fmt: skip
    doc = graphs.dtypes_deployment(ABS, NAME, NAMESPACE, rollout=rollout,
                                   serving={"resources": {"cpu": "1", "memory": "1Gi"}})  # fmt: skip
    client.CustomObjectsApi(api).create_namespaced_custom_object(*MD[:2], NAMESPACE, MD[2], doc)
    wait_until("the ModelDeployment Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (_md(api).get("status") or {}).get("conditions") or []), timeout=240)  # fmt: skip
    wait_until("the route answering", lambda: _infer(gateway) == "abs")
    stable_pods = _pods(api, f"{NAME}-predictor")
    assert len(stable_pods) == 1

    with ClosedLoop(gateway) as load:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            *MD[:2], NAMESPACE, MD[2], NAME, {"spec": {"model": {"uri": RELU}}}
        )
        canary_pods: dict[str, str] = {}
        for step, weight in enumerate(STEPS):
            wait_until(f"step {step + 1} at {weight}%", lambda s=step, w=weight: _at_step(api, s, w),
                       timeout=240)  # fmt: skip
            isvc = _isvc(api)
            # KServe's own canary: an entry of spec.canary, its share read back in its status.
            assert [(c["predictor"]["name"], c["trafficPercent"]) for c in isvc["spec"]["canary"]] \
                == [("a", weight)]  # fmt: skip
            assert isvc["status"]["canaryStatuses"][0] | {"modelStatus": None} == {
                "name": "a",
                "ready": True,
                "trafficPercent": weight,
                "modelStatus": None,
            }
            # The ModelDeployment's status (and so ``modeldeploy status``) shows KServe's entry.
            traffic = _md(api)["status"]["traffic"]
            assert traffic["kserveCanary"] == {"predictor": "a", "trafficPercent": weight,
                                               "ready": True}  # fmt: skip
            assert f"spec.canary predictor a: {weight}% as KServe reads it back" in describe(
                _md(api)
            )
            canary_pods = canary_pods or _pods(api, f"{NAME}-a-predictor")
            assert _pods(api, f"{NAME}-a-predictor") == canary_pods  # fixed replicas, no churn
            share = _share(gateway, "relu")
            assert abs(share - weight) <= TOLERANCE, (step, weight, share)
            _annotate(api, "modeldeploy.io/promote", "step")
        wait_until("Promoted", lambda: _phase(api) == "Promoted", timeout=240)
        wait_until("stable's old Deployment and Service gone", lambda: _gone(
            api, "Deployment", f"{NAME}-predictor") and _gone(api, "Service", f"{NAME}-predictor"))  # fmt: skip
        time.sleep(2)  # a last look: the load keeps running after the old pods went
    assert load.failures == [], load.failures[:5]
    assert load.answers["abs"] > 0
    assert load.answers["relu"] > 0

    # Promotion was KServe's rename: stable is now predictor "a", the canary's pods, unchanged.
    isvc = _isvc(api)
    assert isvc["spec"]["predictor"]["name"] == "a"
    assert "canary" not in isvc["spec"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == _md(api)["status"]["artifact"]["uri"]
    assert _pods(api, f"{NAME}-a-predictor") == canary_pods
    assert not set(_pods(api, f"{NAME}-predictor")) & set(stable_pods)
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", f"{NAME}-traffic"
    )
    assert [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]] == [
        (f"{NAME}-a-predictor", 100)]  # fmt: skip
    assert _share(gateway, "relu") == 100
    assert "kserveCanary" not in _md(api)["status"]["traffic"]


def test_an_aborted_kserve_canary_is_removed_and_stable_keeps_its_pods(
    kserve_cluster: KServeCluster, operator: LocalStack
) -> None:
    """Runs after the promotion above: stable is predictor "a" (Relu); the candidate (Abs
    again, a new rollout) takes slot "b" and is aborted at its first step."""
    with reporting(kserve_cluster, operator):
        _abort(kserve_cluster)


def _abort(cluster: KServeCluster) -> None:
    api, gateway = cluster.api, cluster.gateway.url
    wait_until("Promoted", lambda: _phase(api) == "Promoted", timeout=5)
    stable_pods = _pods(api, f"{NAME}-a-predictor")
    with ClosedLoop(gateway) as load:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            *MD[:2], NAMESPACE, MD[2], NAME, {"spec": {"model": {"uri": ABS}}}
        )
        wait_until("step 1", lambda: _at_step(api, 0, STEPS[0]), timeout=240)
        assert _isvc(api)["spec"]["canary"][0]["predictor"]["name"] == "b"
        assert load.failures == []
        _annotate(api, "modeldeploy.io/abort", "true")
        wait_until("Aborted", lambda: _phase(api) == "Aborted")
        wait_until("the canary entry removed", lambda: "canary" not in _isvc(api)["spec"])
        wait_until("the canary's Deployment gone", lambda: _gone(api, "Deployment",
                                                                 f"{NAME}-b-predictor"))  # fmt: skip
        time.sleep(2)
    assert load.failures == [], load.failures[:5]
    assert _pods(api, f"{NAME}-a-predictor") == stable_pods  # never restarted
    assert _share(gateway, "relu") == 100
