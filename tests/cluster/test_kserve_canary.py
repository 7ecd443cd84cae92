"""A Standard-mode canary on KServe 0.20's own terms, on the KServe cluster
(``tests/support/cluster.py``): the operator finds ``spec.canary`` in the InferenceService schema
the API server publishes, runs the candidate as ``spec.canary[0]`` of the one InferenceService,
and splits the ModelDeployment's host between the two predictors' Services with its route.
KServe's manager makes the canary's Deployment and Service and reports it in
``status.canaryStatuses``; the node agent runs its pods; requests cross the gateway to them.

The two versions are told apart by their answers: stable's FP32 output is ``Abs(x)``, the
candidate's ``Relu(x)`` (0 where x is negative).

The walk and the abort run with the operator as a local process, outside the cluster: live
golden parity is off there, as it sends its golden requests to the canary Service's
``<svc>.<ns>.svc.cluster.local`` name, which only pods resolve (the node agent's cluster DNS).
The parity rollback runs the operator as the Helm chart's pod, which does.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import pytest
from kubernetes import client

from modeldeploy.rollout_control import describe
from tests.runtime import graphs
from tests.support.cluster import (
    CHART_NAMESPACE,
    RELEASE,
    KServeCluster,
    through_gateway,
    wait_until,
)
from tests.support.golden import tamper_golden_outputs
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
SCALE_DOWN = {"MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS": "3"}
"""Behind Traefik, pods the route stops sending to stay this long after it accepts the route
(the chart's own default is 30 s): the parity rollback sets its own in the spec instead."""


def local_operator(
    cluster: KServeCluster, folder: str, *namespaces: str, args: tuple[str, ...] = ()
) -> LocalStack:
    """Both versions of the model on the ``models`` claim of each of ``namespaces``, and the
    operator watching the first one as a local process (with ``args``), deciding for itself
    which canary KServe supports."""
    for namespace in namespaces:
        cluster.claim(namespace, "models")
        cluster.claim(namespace, "artifacts", mode=0o777)
    for name, op in (("abs", "Abs"), ("relu", "Relu")):
        (cluster.pvc_root / "models" / name).mkdir(exist_ok=True)
        graphs.dtypes(cluster.pvc_root / "models" / name / "model.onnx", fp32_op=op)
    stack = LocalStack(cluster.plane.kubeconfig, cluster.workdir / folder, cluster.pvc_root)
    stack.operator("--artifact-store", "pvc://artifacts/store", *args, namespaces=[namespaces[0]],
                   env={"MODELDEPLOY_KSERVE_CANARY": "auto",
                        "MODELDEPLOY_METRICS_MIN_WINDOW_SECONDS": "5", **SCALE_DOWN})  # fmt: skip
    return stack


@pytest.fixture(scope="module")
def operator(kserve_cluster: KServeCluster) -> Iterator[LocalStack]:
    """The operator on the KServe cluster, deciding for itself which canary KServe supports."""
    cluster = kserve_cluster
    stack = local_operator(cluster, "canary-operator", NAMESPACE)
    try:
        yield stack
    finally:
        stack.stop()
        client.CoreV1Api(cluster.api).delete_namespace(NAMESPACE)


def _infer(gateway: str, host: str = HOST) -> str:
    """Which version answered one request through the gateway: "abs" or "relu"."""
    fp32 = graphs.infer_fp32(gateway, NAME, graphs.dtypes_inputs([-1.0] * graphs.WIDTH), host)
    return "abs" if fp32[0] == 1.0 else "relu"


class Background:
    """A loop (``_run``) on a thread of its own for the length of a ``with`` block."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class ClosedLoop(Background):
    """One client sending request after request, each as soon as the last was answered; every
    outcome counted (an HTTP status other than 200, or no answer, is a failure)."""

    def __init__(self, gateway: str, host: str = HOST) -> None:
        self.gateway, self.host = gateway, host
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.failures: list[str] = []
        super().__init__()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answered = _infer(self.gateway, self.host)
                with self._lock:
                    self.answers[answered] += 1
            except (urllib.error.URLError, OSError, ValueError) as err:
                self.failures.append(f"{time.strftime('%X')} {err}")

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.answers)


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
        lines.append(f"--- operator\n{stack.processes[-1].log_text()[-4000:]}")
        raise AssertionError("\n".join(lines)) from err


class WeightLog(Background):
    """The weight the route gives one predictor Service, each time it changes (read every
    0.1 s): the traffic as the gateway is told it, to show it never flaps back."""

    def __init__(self, api: Any, service: str, namespace: str = NAMESPACE) -> None:
        self.api, self.service, self.namespace = api, service, namespace
        self.seen: list[int] = []
        super().__init__()

    def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self._stop.wait(0.1):
            route = custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", f"{NAME}-traffic"
            )
            refs = route["spec"]["rules"][0]["backendRefs"]
            weight = sum(int(r["weight"]) for r in refs if r["name"] == self.service)
            if not self.seen or self.seen[-1] != weight:
                self.seen.append(weight)


def _md(api: Any, namespace: str = NAMESPACE) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *MD[:2], namespace, MD[2], NAME
    )
    return found


def _isvc(api: Any, namespace: str = NAMESPACE) -> dict[str, Any]:
    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], NAME
    )
    return found


def _pods(api: Any, component: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """Running pods of KServe's predictor Deployment ``component``: name → uid."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"app=isvc.{component}"
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


def _serving_stable(api: Any, gateway: str, namespace: str, host: str) -> None:
    """Wait for the ModelDeployment to be Ready and for stable (Abs) to answer at ``host``."""
    wait_until("the ModelDeployment Ready", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (_md(api, namespace).get("status") or {}).get("conditions") or []), timeout=240)  # fmt: skip
    assert through_gateway("the route answering", lambda: _infer(gateway, host)) == "abs"


def _phase(api: Any, namespace: str = NAMESPACE) -> str | None:
    return ((_md(api, namespace).get("status") or {}).get("rollout") or {}).get("phase")


def _annotate(api: Any, key: str, value: str | None, namespace: str = NAMESPACE) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        *MD[:2], namespace, MD[2], NAME, {"metadata": {"annotations": {key: value}}}
    )


def _share(gateway: str, version: str, host: str = HOST, load: ClosedLoop | None = None) -> float:
    """``version``'s share of SAMPLE requests, and of ``load``'s sent meanwhile: the gateway
    splits the requests of all its clients together, so a second client's share alone can be
    skewed by how the two interleave; together they are what the gateway did."""
    before = load.snapshot() if load is not None else Counter()
    answers = Counter(_infer(gateway, host) for _ in range(SAMPLE))
    if load is not None:
        answers += load.snapshot() - before
    return 100 * answers[version] / sum(answers.values())


def _gone(api: Any, kind: str, name: str, namespace: str = NAMESPACE) -> bool:
    read = {"Deployment": client.AppsV1Api(api).read_namespaced_deployment,
            "Service": client.CoreV1Api(api).read_namespaced_service}[kind]  # fmt: skip
    try:
        read(name, namespace)
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
    _serving_stable(api, gateway, NAMESPACE, HOST)
    stable_pods = _pods(api, f"{NAME}-predictor")
    assert len(stable_pods) == 1

    with ClosedLoop(gateway) as load, WeightLog(api, f"{NAME}-a-predictor") as weights:
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
            share = _share(gateway, "relu", load=load)
            assert abs(share - weight) <= TOLERANCE, (step, weight, share)
            _annotate(api, "modeldeploy.io/promote", "step")
        wait_until("Promoted", lambda: _phase(api) == "Promoted", timeout=240)
        wait_until("stable's old Deployment and Service gone", lambda: _gone(
            api, "Deployment", f"{NAME}-predictor") and _gone(api, "Service", f"{NAME}-predictor"))  # fmt: skip
        time.sleep(2)  # a last look: the load keeps running after the old pods went
    assert load.failures == [], load.failures[:5]
    assert load.answers["abs"] > 0
    assert load.answers["relu"] > 0
    # Every step's weight, then all of it (the canary's Service is stable's after the rename),
    # and never a step back.
    assert weights.seen == sorted(weights.seen), weights.seen
    assert {10, 50, 90, 100} <= set(weights.seen), weights.seen

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


def test_an_operator_killed_at_step_two_resumes_it_with_the_same_weights_and_no_flapping(
    kserve_cluster: KServeCluster, operator: LocalStack
) -> None:
    """Runs after the abort above: the aborted revision is retried. At step 2 (50%) the
    operator is SIGKILLed and started again; meanwhile every window of 100 requests through
    the gateway keeps the canary's share within ±10 points, and the restarted operator
    carries on at step 2 with the same clock, without rewriting the InferenceService."""
    with reporting(kserve_cluster, operator):
        _kill_and_resume(kserve_cluster, operator)


def _kill_and_resume(cluster: KServeCluster, stack: LocalStack) -> None:
    api, gateway = cluster.api, cluster.gateway.url
    wait_until("Aborted", lambda: _phase(api) == "Aborted", timeout=5)
    _annotate(api, "modeldeploy.io/retry", "true")
    wait_until("step 1", lambda: _at_step(api, 0, STEPS[0]), timeout=240)
    _annotate(api, "modeldeploy.io/promote", "step")
    wait_until("step 2", lambda: _at_step(api, 1, STEPS[1]), timeout=120)
    before = _md(api)["status"]["rollout"]
    generation = _isvc(api)["metadata"]["generation"]
    windows: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            answers: Counter[str] = Counter()
            for _ in range(100):
                try:
                    answers[_infer(gateway)] += 1
                except (OSError, ValueError) as err:
                    failures.append(str(err))
            windows.append(answers["abs"])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stack.processes[-1].kill()
        time.sleep(2)  # a gap with no operator at all
        stack.operator("--artifact-store", "pvc://artifacts/store", namespaces=[NAMESPACE],
                       env={"MODELDEPLOY_KSERVE_CANARY": "auto", **SCALE_DOWN})  # fmt: skip
        time.sleep(8)  # the new operator's first reconciliations and a resync's worth
    finally:
        stop.set()
        sampler.join()
    after = _md(api)["status"]["rollout"]
    assert (after["phase"], after["step"], after["stepStartedAt"]) == (
        "Progressing", 1, before["stepStartedAt"])  # fmt: skip
    assert _isvc(api)["metadata"]["generation"] == generation  # nothing rewritten
    assert failures == []
    assert len(windows) >= 3, windows
    assert all(abs(w - STEPS[1]) <= 10 for w in windows), windows
    _annotate(api, "modeldeploy.io/promote", "full")
    wait_until("Promoted", lambda: _phase(api) == "Promoted", timeout=120)


PARITY = "parity"


@pytest.fixture
def charted(on_kserve: KServeCluster, operator: LocalStack) -> Iterator[KServeCluster]:
    """The operator as the Helm chart's pod, watching ``parity``: in the cluster, it resolves
    the canary Service's name (``operator`` made the models)."""
    cluster = on_kserve
    cluster.claim(PARITY, "models")
    cluster.claim(PARITY, "artifacts", mode=0o777)
    cluster.install_chart("pvc://artifacts/store", PARITY)
    try:
        yield cluster
    finally:
        cluster.helm("uninstall", RELEASE, "-n", CHART_NAMESPACE, "--wait")


def test_a_kserve_canary_whose_live_answers_break_parity_is_rolled_back_with_no_failed_request(
    charted: KServeCluster,
) -> None:
    """The chart's operator pod sends the candidate's golden inputs to its Service by name;
    their stored outputs were shifted (as when a serving path silently diverges from what
    staging verified), so the first analysis fails and the rollout is rolled back while a
    client's requests keep being answered."""
    cluster, api, gateway = charted, charted.api, charted.gateway.url
    host = f"{NAME}.{PARITY}.example.com"
    rollout = {
        "steps": [{"weight": 20, "pause": "1h"}],
        "analysis": {"failureLimit": 0},
        "scaleDownDelay": "3s",
    }  # the chart's operator would wait 30 s
    doc = graphs.dtypes_deployment(ABS, NAME, PARITY, rollout=rollout,
                                   serving={"resources": {"cpu": "1", "memory": "1Gi"}})  # fmt: skip
    client.CustomObjectsApi(api).create_namespaced_custom_object(*MD[:2], PARITY, MD[2], doc)
    _serving_stable(api, gateway, PARITY, host)
    stable_pods = _pods(api, f"{NAME}-predictor", PARITY)
    with ClosedLoop(gateway, host) as load:
        # Paused at its first step: the canary is made and weighted, no analysis yet.
        _annotate(api, "modeldeploy.io/pause", "true", PARITY)
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            *MD[:2], PARITY, MD[2], NAME, {"spec": {"model": {"uri": RELU}}}
        )
        wait_until("the canary weighted, paused", lambda: _phase(api, PARITY) == "Paused" and (
            _md(api, PARITY)["status"].get("traffic") or {}).get("canary") == 20, timeout=240)  # fmt: skip
        key = _md(api, PARITY)["status"]["artifact"]["key"]
        tamper_golden_outputs(cluster.pvc_root / "artifacts" / "store" / PARITY, key, NAME)
        _annotate(api, "modeldeploy.io/pause", None, PARITY)
        wait_until("RolledBack", lambda: _phase(api, PARITY) == "RolledBack", timeout=120)
        accepted: list[str] = []  # status.traffic.gateway.since, as each look found it

        def removed() -> bool:
            gateway = (_md(api, PARITY)["status"].get("traffic") or {}).get("gateway")
            accepted.extend([gateway["since"]] if gateway else [])
            return "canary" not in _isvc(api, PARITY)["spec"]

        wait_until("the canary entry removed", removed)
        removed_at = datetime.now(UTC)
        time.sleep(2)
    assert load.failures == [], load.failures[:5]
    # The canary's pods outlived Traefik's acceptance of the route without them by the delay.
    assert accepted, "the gateway's acceptance of the route was never recorded"
    assert removed_at - datetime.fromisoformat(accepted[-1]) >= timedelta(seconds=3), accepted
    assert load.answers["relu"] > 0  # the canary had its share before the rollback
    failure = _md(api, PARITY)["status"]["rollout"]["failure"]
    assert "live parity" in failure, failure
    assert _pods(api, f"{NAME}-predictor", PARITY) == stable_pods
    assert _share(gateway, "abs", host) == 100


ERRORS = "errors"
LOOKUP_URI = "pvc://models/lookup/model.onnx"


class OutOfTable(Background):
    """A second client, sending INT64 values beyond the lookup canary's table: stable answers
    them, the canary fails them (HTTP 500). Counts both."""

    def __init__(self, gateway: str, host: str) -> None:
        self.gateway, self.host = gateway, host
        self.answered, self.failed = 0, 0
        super().__init__()

    def _run(self) -> None:
        inputs = graphs.dtypes_inputs([-1.0] * graphs.WIDTH, fill=5 * graphs.LOOKUP)
        while not self._stop.is_set():
            try:
                graphs.infer_fp32(self.gateway, NAME, inputs, self.host)
                self.answered += 1
            except urllib.error.HTTPError:
                self.failed += 1


@pytest.fixture
def measured(on_kserve: KServeCluster, operator: LocalStack) -> Iterator[LocalStack]:
    """An operator of its own watching ``errors``, its analysis reading the cluster's
    Prometheus, which discovers the predictor pods (``operator`` made the two models); and a
    third model version, ``Relu`` with the INT64 lookup (``graphs.dtypes``)."""
    cluster = on_kserve
    folder = cluster.pvc_root / "models" / "lookup"
    folder.mkdir(exist_ok=True)
    graphs.dtypes(folder / "model.onnx", fp32_op="Relu", int64_lookup=True)
    stack = local_operator(cluster, "errors-operator", ERRORS,
                           args=("--prometheus-address", cluster.prometheus.url))  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


def test_a_kserve_canary_that_fails_requests_stable_answers_is_rolled_back_on_its_error_rate(
    on_kserve: KServeCluster, measured: LocalStack
) -> None:
    """The candidate fails the requests of one client (INT64 values beyond its table: HTTP
    500), which stable answers. Prometheus scrapes both revisions' pods; the first analysis
    reads the canary's error rate over maxErrorRate and rolls it back. A second client, whose
    requests both versions answer, gets every request answered throughout, and stable's pods
    are never restarted. Batching is off, so a failed request fails only itself."""
    api, gateway = on_kserve.api, on_kserve.gateway.url
    host = f"{NAME}.{ERRORS}.example.com"
    rollout = {"steps": [{"weight": 50, "pause": "1h"}],
               "analysis": {"interval": "2s", "failureLimit": 0, "liveParity": False,
                            "maxErrorRate": 0.05}}  # fmt: skip
    doc = graphs.dtypes_deployment(ABS, NAME, ERRORS, rollout=rollout, serving={
        "resources": {"cpu": "1", "memory": "1Gi"}, "batching": {"maxBatchSize": 1}})  # fmt: skip
    client.CustomObjectsApi(api).create_namespaced_custom_object(*MD[:2], ERRORS, MD[2], doc)
    _serving_stable(api, gateway, ERRORS, host)
    stable_pods = _pods(api, f"{NAME}-predictor", ERRORS)
    with ClosedLoop(gateway, host) as load, OutOfTable(gateway, host) as beyond:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            *MD[:2], ERRORS, MD[2], NAME, {"spec": {"model": {"uri": LOOKUP_URI}}}
        )
        wait_until("RolledBack", lambda: _phase(api, ERRORS) == "RolledBack", timeout=240)
        wait_until("the canary entry removed", lambda: "canary" not in _isvc(api, ERRORS)["spec"])
        time.sleep(2)
        failed_before = beyond.failed
        time.sleep(2)
    assert load.failures == [], load.failures[:5]
    assert load.answers["relu"] > 0  # the canary answered this client while it had traffic
    assert beyond.failed > 0, beyond.answered  # the canary failed this client's requests
    assert beyond.answered > 0  # which stable answered
    assert beyond.failed == failed_before  # back on stable: nothing fails any more
    rollout_status = _md(api, ERRORS)["status"]["rollout"]
    assert "error rate" in rollout_status["failure"], rollout_status
    assert _pods(api, f"{NAME}-predictor", ERRORS) == stable_pods
    assert _share(gateway, "abs", host) == 100
