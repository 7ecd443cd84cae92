"""Shadow parity end to end: the operator as a real process against the real kube-apiserver, the
local executor serving stable and candidate as real runtime processes (it keeps the shadow
ConfigMap's file up to date as the kubelet keeps a configMap volume), a real Prometheus scraping
them, and client traffic made of real held-out digits sent with tritonclient.

A good candidate (the same model re-staged at fp16) agrees and walks on into the canary steps.
A subtly wrong one (a normalisation mean copied from elsewhere, baked into the graph, so its
golden samples and its live golden parity still pass) is caught before any user request reaches
it, and the evidence it leaves reproduces the difference. A candidate that dies after it was
ready fails on its error share, while every client request is still answered.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import psutil
import pytest
from kubernetes import client

from modeldeploy.api import mirror
from modeldeploy.runtime.shadow import compare
from tests.operator.conftest import Kube, digits_spec
from tests.operator.rollouts import ENV_FAST, canary_spec, knative, status, walk
from tests.runtime.server import replay, running
from tests.support.demo_model import digits
from tests.support.load import Load
from tests.support.processes import LocalStack

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


def shadowed(percent: int = 50, duration: str = "12s", **shadow: Any) -> dict[str, Any]:
    rollout = canary_spec([{"weight": 30, "pause": "4s"}, {"weight": 60, "pause": "4s"}])
    rollout["shadow"] = {"percent": percent, "duration": duration, **shadow}
    return rollout


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    """Real digits as the demo's clients send them: 0..255 pixels, FP32 [N, 1, 1, 8, 8]."""
    x, _ = digits()
    return (x[-300:] * 255 / 16).astype(np.float32).reshape(-1, 1, 1, 8, 8)


def isvc_url(kube: Kube, name: str = "digits") -> str:
    found = kube.isvc(name)
    assert found is not None
    return str(found["status"]["url"])


def config_map(api_client: client.ApiClient, namespace: str) -> dict[str, Any] | None:
    try:
        found = client.CoreV1Api(api_client).read_namespaced_config_map(
            mirror.config_map_name("digits"), namespace
        )
    except client.ApiException:
        return None
    return json.loads((found.data or {}).get(mirror.FILE) or "{}")  # type: ignore[no-any-return]


def shadow_status(kube: Kube) -> dict[str, Any]:
    return dict((status(kube).get("rollout") or {}).get("shadow") or {})


def test_a_candidate_re_staged_at_fp16_passes_its_shadow_and_the_canary_steps_follow(
    kube: Kube, start_operator, prometheus: str, held_out: np.ndarray,
    api_client: client.ApiClient, namespace: str,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    kube.create("digits", knative(shadowed(minAgreement=0.99)))
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    stable = status(kube)["revisions"]["stable"]
    load = Load(status(kube)["url"], rows=held_out)
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("mirroring", lambda: (config_map(api_client, namespace) or {}).get("url"),
                  timeout=180)  # fmt: skip
        mirroring = config_map(api_client, namespace)
        seen = walk(kube, {"Promoted", "RolledBack"})
    finally:
        load.stop()
    final = status(kube)
    assert final["rollout"]["phase"] == "Promoted", final["rollout"]
    # Dark first: the candidate got no share of traffic until the shadow had passed.
    phases = [p for p, _, _ in seen]
    assert phases.index("Shadowing") < phases.index("Progressing")
    assert all(weight == 0 for p, _, weight in seen if p == "Shadowing"), seen
    shadow = final["rollout"]["shadow"]
    assert shadow["done"] is True
    assert shadow["active"] is False
    assert shadow["agreement"] >= 0.99, shadow
    assert shadow["compared"] >= 10, shadow
    assert shadow["errors"] == 0, shadow
    assert 0 < shadow["maxAbsDiff"] < 0.05, shadow  # fp16 rounding, never exactly 0
    # The ConfigMap told the old stable revision to mirror to the candidate's own URL, with the
    # candidate artifact's parity tolerances, and was switched off after.
    assert mirroring is not None
    assert mirroring["source"] == stable
    assert mirroring["candidate"] == final["revisions"]["stable"]
    assert mirroring["percent"] == 50
    assert (mirroring["atol"], mirroring["rtol"]) == (1e-3, 1e-3)
    assert config_map(api_client, namespace) == {}
    # Events carry whole seconds, so their order is the phases' above; here, that each came.
    reasons = {r for _, r in kube.events("digits")}
    assert {"ShadowStarted", "ShadowPassed", "CanaryStep", "RolloutPromoted"} <= reasons
    assert load.outcomes["error"] == 0


def route_weights(api_client: client.ApiClient, namespace: str) -> tuple[int, ...] | None:
    try:
        route = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            *GATEWAY[:2], namespace, GATEWAY[2], "digits-traffic"
        )
    except client.ApiException:
        return None
    return tuple(ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"])


@pytest.fixture
def route_recorder(api_client: client.ApiClient, namespace: str) -> Iterator[list[Any]]:
    """Every distinct set of HTTPRoute weights while the test runs."""
    seen: list[Any] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            now = route_weights(api_client, namespace)
            if now is not None and (not seen or seen[-1] != now):
                seen.append(now)
            time.sleep(0.1)

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join()


def test_a_candidate_with_the_wrong_mean_is_caught_in_the_dark_and_its_evidence_reproduces_it(
    kube: Kube, start_operator, prometheus: str, held_out: np.ndarray, stack: LocalStack,
    route_recorder: list[Any], tmp_path: Path,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    kube.create("digits", digits_spec(rollout=shadowed(maxEvidence=2)))  # Standard mode
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    first = status(kube)
    # No gateway here: clients reach stable's own URL, which the route sends them all to.
    load = Load(isvc_url(kube), rows=held_out)
    try:
        spec = kube.get("digits")["spec"]  # type: ignore[index]
        preprocessing = {**spec["model"]["preprocessing"], "mean": [0.45]}
        kube.patch_spec("digits", {"model": {"preprocessing": preprocessing}})
        seen = walk(kube, {"RolledBack", "Promoted"})
    finally:
        load.stop()
    final = status(kube)
    rollout = final["rollout"]
    assert rollout["phase"] == "RolledBack", rollout
    assert "shadow phase failed before any user traffic moved" in rollout["failure"]
    assert "shadow agreement" in rollout["failure"]
    assert "below minAgreement 0.99" in rollout["failure"]
    assert final["revisions"]["stable"] == first["revisions"]["stable"]
    # The staging parity and the canary's live golden parity both passed: its golden samples
    # were made with the same wrong mean. Only the comparison with stable caught it.
    assert final["artifact"]["parity"]["passed"] is True
    assert "live parity" not in rollout["failure"]
    # No user request ever reached the candidate: the route never gave it a share.
    assert all(weights[1:] in ((), (0,)) for weights in route_recorder), route_recorder
    assert all(weight == 0 for _, _, weight in seen), seen
    assert load.outcomes["error"] == 0
    shadow = rollout["shadow"]
    assert shadow["agreement"] < 0.99
    assert shadow["compared"] >= 10
    # The evidence: at most maxEvidence files, in the namespace's own prefix of the store.
    evidence = shadow["evidence"]
    assert 1 <= len(evidence) <= 2, shadow
    kept_path = stack.pvc_root / evidence[0].removeprefix("pvc://")
    assert f"/.shadow/digits/{final['revisions']['failed']}/" in evidence[0]
    kept = np.load(io.BytesIO(kept_path.read_bytes()), allow_pickle=False)
    body, header = kept["request"].tobytes(), int(kept["request_header_length"])
    # Replayed, the request gets stable's kept answer from stable, and the candidate's from the
    # candidate artifact served again by hand, as a person reproducing it would.
    for name, array in replay(isvc_url(kube), body, header).items():
        np.testing.assert_array_equal(array, kept[f"stable/{name}"])
    candidate_artifact = stack.pvc_root / final["revisions"]["canaryUri"].removeprefix("pvc://")
    with running(candidate_artifact, tmp_path) as candidate:
        for name, array in replay(f"http://{candidate.http}", body, header).items():
            np.testing.assert_array_equal(array, kept[f"candidate/{name}"])
    # And the two kept answers disagree as the shadow judged them: beyond the candidate's parity
    # tolerances (1e-3, 1e-3), or another top-1 class.
    outputs = [f.removeprefix("stable/") for f in kept.files if f.startswith("stable/")]
    verdict = compare({n: kept[f"stable/{n}"] for n in outputs},
                      {n: kept[f"candidate/{n}"] for n in outputs}, 1e-3, 1e-3, classifier=True)  # fmt: skip
    assert not verdict.agree, verdict


def _kill_listener(url: str) -> None:
    port = urlparse(url).port
    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            assert connection.pid is not None
            os.kill(connection.pid, signal.SIGKILL)
            return
    raise AssertionError(f"nothing listens on {url}")


def test_a_candidate_that_dies_in_the_shadow_fails_on_its_error_share_and_no_client_notices(
    kube: Kube, start_operator, prometheus: str, held_out: np.ndarray,
    api_client: client.ApiClient, namespace: str,
) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = shadowed(duration="30s", timeout="1s")
    # The golden requests would find a dead canary too: off, so the shadow's own numbers judge.
    rollout["analysis"]["liveParity"] = False
    kube.create("digits", knative(rollout))
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    load = Load(status(kube)["url"], rows=held_out)
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        url = kube.wait("mirroring", lambda: (config_map(api_client, namespace) or {}).get("url"),
                        timeout=180)  # fmt: skip
        _kill_listener(url)
        seen = walk(kube, {"RolledBack", "Promoted"})
    finally:
        load.stop()
    rollout = status(kube)["rollout"]
    assert rollout["phase"] == "RolledBack", (rollout, seen)
    assert "the candidate failed" in rollout["failure"]
    assert "mirrored requests" in rollout["failure"]
    assert rollout["shadow"]["errors"] > 0
    assert all(weight == 0 for _, _, weight in seen), seen
    # Every client request was answered while the shadow's requests failed.
    assert load.outcomes["error"] == 0
    # At least as many as the mirrored requests the failure stands on (minRequests, 10).
    assert load.outcomes["ok"] >= 10
