"""Progressive canary rollouts, end to end: the operator as a real process against the real
kube-apiserver (KServe and Gateway API CRDs installed), the local executor serving stable and
canary as real runtime processes behind a weighted router (it writes the traffic status KServe
would), a real Prometheus scraping them, real load from tritonclient, and analysis with real
golden requests.

Each bad canary is bad in a way real ones are: a model whose input shape changed (every request
of the old shape fails), a model that is much slower, and an artifact whose answers no longer
match its stored golden outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.operator.conftest import Kube, digits_spec
from tests.operator.rollouts import (
    ENV_FAST,
    canary_spec,
    cli,
    deploy_stable,
    knative,
    phase,
    status,
    walk,
)
from tests.support.demo_model import build_wide_model
from tests.support.golden import tamper_golden_outputs
from tests.support.processes import LocalStack

GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")


@pytest.fixture(scope="module")
def bad_models(stack: LocalStack) -> dict[str, Path]:
    """TorchScript models on the "models" volume that make bad canaries."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    root = stack.pvc_root / "models"
    paths = {"slow": root / "slow" / "model.pt", "wide": root / "wide" / "model.pt",
             "shuffled": root / "shuffled" / "model.pt"}  # fmt: skip

    class Slow(nn.Module):
        """Same signature as digits ([N,1,8,8] → [N,10]); 600 chained 2048² matmuls."""

        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(64, 2048)
            self.w = nn.Parameter(torch.randn(2048, 2048) / 2048**0.5)
            self.out = nn.Linear(2048, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.inp(x.flatten(1)))
            for _ in range(600):
                h = torch.tanh(h @ self.w)
            return self.out(h)

    paths["slow"].parent.mkdir(parents=True, exist_ok=True)
    torch.jit.trace(Slow().eval(), torch.zeros(1, 1, 8, 8)).save(str(paths["slow"]))
    build_wide_model(paths["wide"])

    class Shuffled(nn.Module):
        """The digits model with its classes rolled by one: every answer well formed and
        confident, and the wrong digit's name (labels shuffled in a retraining)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.roll(self.inner(x), 1, dims=1)

    digits_model = torch.jit.load(str(root / "digits" / "model.pt"))
    paths["shuffled"].parent.mkdir(parents=True, exist_ok=True)
    torch.jit.trace(Shuffled(digits_model).eval(), torch.zeros(1, 1, 8, 8)).save(
        str(paths["shuffled"])
    )
    return paths


def test_good_canary_walks_every_step_and_is_promoted(
    kube: Kube, start_operator, prometheus: str
) -> None:  # type: ignore[no-untyped-def]
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec(
        # Long enough for minRequests' worth of canary traffic at 20% on a loaded machine.
        [{"weight": 20, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
        maxErrorRate=0.01,
        maxP99LatencyMs=1000,
        # The p99 of a few dozen requests is their slowest one; on two shared cores a single
        # scheduling stall of the fresh canary measured 23x stable's (200 ms against 8.6 ms).
        maxLatencyRatio=60,
    )
    first, load = deploy_stable(kube, knative(rollout))
    try:
        assert first["revisions"] == {"stable": first["artifact"]["stagingHash"],
                                      "stableUri": first["artifact"]["uri"]}  # fmt: skip
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        seen = walk(kube, {"Promoted", "RolledBack"})
    finally:
        load.stop()
    final = status(kube)
    assert final["rollout"]["phase"] == "Promoted", final["rollout"]
    # Both steps were held at their weights, in order, read back from KServe's traffic status.
    held = [(step, weight) for p, step, weight in seen if p == "Progressing" and weight]
    assert (0, 20) in held, seen
    assert (1, 50) in held, seen
    assert held.index((0, 20)) < held.index((1, 50))
    new = final["artifact"]
    assert final["revisions"] == {"stable": new["stagingHash"], "stableUri": new["uri"]}
    assert final["traffic"] == {"stable": 100, "canary": 0, "split": "100/0"}
    # The last analysis measured real traffic on the canary, and the golden answers matched.
    analysis = final["rollout"]["analysis"]
    assert analysis["passed"] is True
    assert analysis["requests"] > 0
    assert analysis["errorRate"] == 0
    assert analysis["p99LatencyMs"] > 0
    assert analysis["stableP99LatencyMs"] > 0
    assert 0 <= analysis["parityMaxAbsDiff"] < 0.01  # fp16 vs its own fp16 golden outputs
    isvc = kube.isvc("digits")
    assert isvc is not None
    predictor = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    assert predictor["model"]["storageUri"] == new["uri"]
    assert predictor["labels"]["modeldeploy.io/revision"] == new["stagingHash"]
    assert load.outcomes["error"] == 0
    assert load.outcomes["ok"] > 100
    reasons = [r for _, r in kube.events("digits")]
    kube.wait(
        "the promotion Event", lambda: "RolloutPromoted" in [r for _, r in kube.events("digits")]
    )
    assert reasons.count("CanaryStep") == 2
    assert "RolloutStarted" in reasons
    assert kube.condition("digits", "RolloutProgressing")["reason"] == "Promoted"
    assert kube.condition("digits", "Degraded")["status"] == "False"


@pytest.mark.parametrize("bad", ["errors", "slow", "golden"])
def test_bad_canary_is_rolled_back_with_the_reason(
    bad: str,
    kube: Kube,
    start_operator,
    prometheus: str,
    bad_models: dict[str, Path],
    store_dir: Path,
) -> None:  # type: ignore[no-untyped-def]
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec(
        [{"weight": 30, "pause": "20s"}, {"weight": 60, "pause": "20s"}],
        maxErrorRate=0.05,
        maxP99LatencyMs=100,
    )
    first, load = deploy_stable(kube, knative(rollout))
    try:
        if bad == "errors":  # the new model wants 16x16 images; clients still send 8x8
            kube.patch_spec("digits", {"model": {
                "uri": "pvc://models/wide/model.pt", "format": "torchscript",
                "inputs": [{"name": "image", "shape": [1, 16, 16]}],
                "preprocessing": {"resize": {"height": 16, "width": 16}, "scale": 1 / 255},
                "postprocessing": first_postprocessing(kube)}})  # fmt: skip
        elif bad == "slow":
            kube.patch_spec("digits", {"model": {"uri": "pvc://models/slow/model.pt"}})
        else:
            kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
            kube.wait("the canary at its first step",
                      lambda: (status(kube).get("traffic") or {}).get("canary") == 30, timeout=180)  # fmt: skip
            tamper_golden_outputs(store_dir, status(kube)["artifact"]["key"])
        seen = walk(kube, {"RolledBack", "Promoted"})
        time.sleep(2)
        mark = dict(load.outcomes)
        time.sleep(3)
        after_rollback = Counter({k: v - mark.get(k, 0) for k, v in load.outcomes.items()})
    finally:
        load.stop()
    final = status(kube)
    rollout_status = final["rollout"]
    assert rollout_status["phase"] == "RolledBack", seen
    canary = final["artifact"]["stagingHash"]
    assert final["revisions"]["failed"] == canary
    assert final["revisions"]["stable"] == first["revisions"]["stable"]
    assert final["traffic"] == {"stable": 100, "canary": 0, "split": "100/0"}
    # The Precision column tells what serves: stable's fp32, never the rolled-back canary's.
    assert final["precision"] == first["precision"] == "fp32"
    # The 16x16 canary refuses the 8x8 requests stable accepts: as the client's fault (400),
    # so not in its error rate, but far beyond stable's client errors on the same traffic.
    expected = {"errors": "client errors", "slow": "p99 latency", "golden": "live parity"}[bad]
    assert expected in rollout_status["failure"], rollout_status
    degraded = kube.wait_condition("digits", "Degraded", "True", "RolloutRolledBack")
    assert expected in degraded["message"]
    assert kube.condition("digits", "Ready")["status"] == "True"
    analysis = rollout_status["analysis"]
    assert analysis["passed"] is False
    if bad == "errors":
        assert analysis["clientErrorRate"] > 0.5
        assert analysis["stableClientErrorRate"] < 0.05
    if bad == "slow":
        assert analysis["p99LatencyMs"] > 100
    # All traffic is back on stable at once: Knative's canaryTrafficPercent 0, the old revision.
    isvc = kube.isvc("digits")
    assert isvc is not None
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert after_rollback["error"] == 0
    assert after_rollback["ok"] > 20
    kube.wait("the rollback Event",
              lambda: ("Warning", "RolloutRolledBack") in kube.events("digits"))  # fmt: skip
    # The failed revision stays out of traffic while the spec is unchanged.
    time.sleep(3)
    assert status(kube)["traffic"]["canary"] == 0
    assert status(kube)["rollout"]["phase"] == "RolledBack"


def test_a_canary_whose_classes_are_shuffled_fails_max_prediction_psi(
    kube: Kube, start_operator, prometheus: str, bad_models: dict[str, Path]
) -> None:  # type: ignore[no-untyped-def]
    """It errs nowhere, is fast, and matches its own golden outputs: only the mix of answers,
    compared with stable's on the same traffic, shows it."""
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec([{"weight": 50, "pause": "20s"}], maxPredictionPsi=0.25, minRequests=20)
    first, load = deploy_stable(kube, knative(rollout))
    try:
        kube.patch_spec("digits", {"model": {"uri": "pvc://models/shuffled/model.pt"}})
        seen = walk(kube, {"RolledBack", "Promoted"})
    finally:
        load.stop()
    final = status(kube)
    assert final["rollout"]["phase"] == "RolledBack", seen
    assert "prediction PSI" in final["rollout"]["failure"], final["rollout"]
    analysis = final["rollout"]["analysis"]
    assert analysis["predictionPsi"] > 0.25
    assert analysis.get("errorRate", 0) == 0
    assert analysis.get("parityMaxAbsDiff", 0) < 0.01  # its own goldens: parity passes
    assert final["revisions"]["stable"] == first["revisions"]["stable"]
    assert load.outcomes["error"] == 0


def first_postprocessing(kube: Kube) -> dict[str, Any]:
    spec = (kube.get("digits") or {})["spec"]
    return dict(spec["model"]["postprocessing"])


def test_manual_pause_promote_one_step_abort_retry_and_promote_full(
    kube: Kube, start_operator, namespace: str, prometheus: str, stack: LocalStack
) -> None:  # type: ignore[no-untyped-def]
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec([{"weight": 25, "pause": "3s"}, {"weight": 50, "pause": "10m"},
                           {"weight": 75, "pause": "10m"}])  # fmt: skip
    _first, load = deploy_stable(kube, knative(rollout))
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("the first step", lambda: status(kube).get("traffic", {}).get("canary") == 25,
                  timeout=180)  # fmt: skip
        cli(stack, "pause", "digits", "-n", namespace)
        kube.wait("Paused", lambda: phase(kube) == "Paused")
        time.sleep(6)  # twice the step's pause: a paused rollout does not advance
        paused = status(kube)
        assert paused["rollout"]["step"] == 0
        assert paused["traffic"]["canary"] == 25
        printed = cli(stack, "status", "digits", "-n", namespace)
        assert "Paused, step 1/3 (target 25%)" in printed
        assert "stable 75%, canary 25%" in printed
        assert "modeldeploy.io/pause=true" in printed

        cli(stack, "resume", "digits", "-n", namespace)
        kube.wait("the second step", lambda: status(kube).get("traffic", {}).get("canary") == 50)
        # promote without --full ends the 10-minute step now: the next step, not promotion.
        cli(stack, "promote", "digits", "-n", namespace)
        kube.wait("the third step", lambda: status(kube).get("traffic", {}).get("canary") == 75)
        third = status(kube)
        assert (third["rollout"]["phase"], third["rollout"]["step"]) == ("Progressing", 2)
        assert third["revisions"]["stable"] != third["artifact"]["stagingHash"]

        cli(stack, "abort", "digits", "-n", namespace)
        kube.wait("Aborted", lambda: phase(kube) == "Aborted")
        # The split is read back from KServe's status, which follows within a reconcile.
        kube.wait("0% on the canary", lambda: status(kube)["traffic"]["canary"] == 0)
        aborted = status(kube)
        assert aborted["revisions"]["failed"] == aborted["artifact"]["stagingHash"]
        assert aborted["artifact"]["precision"] == "fp16"
        assert aborted["precision"] == "fp32"  # what serves, not what was aborted
        assert (
            "aborted"
            in kube.wait_condition("digits", "Degraded", "True", "RolloutAborted")["message"]
        )
        assert "modeldeploy.io/abort" not in (
            (kube.get("digits") or {})["metadata"].get("annotations") or {}
        )

        # retry: the aborted revision is rolled out again, from the first step.
        cli(stack, "retry", "digits", "-n", namespace)
        kube.wait("the retried first step",
                  lambda: status(kube).get("traffic", {}).get("canary") == 25)  # fmt: skip
        assert "failed" not in status(kube)["revisions"]
        kube.wait("the retried second step",
                  lambda: status(kube).get("traffic", {}).get("canary") == 50)  # fmt: skip

        # promote --full skips every step left; status --watch follows it and exits 0 once done.
        watcher = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy", "status", "digits", "-n", namespace, "--watch",
             "-o", "json", "--timeout", "120", "--kubeconfig", str(stack.kubeconfig)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            cli(stack, "promote", "--full", "digits", "-n", namespace)
            out, err = watcher.communicate(timeout=150)
        finally:
            watcher.kill()
        assert watcher.returncode == 0, err
        printed_objects = json_stream(out)
        assert printed_objects[-1]["status"]["rollout"]["phase"] == "Promoted"
        assert len(printed_objects) >= 2  # the state it started from, then each change
        promoted = status(kube)
        assert promoted["revisions"]["stable"] == promoted["artifact"]["stagingHash"]
        assert promoted["precision"] == "fp16"
        assert promoted["traffic"]["canary"] == 0
        assert promoted["traffic"]["stable"] == 100
        assert "Promoted" in cli(stack, "status", "digits", "-n", namespace)
        kube.wait_condition("digits", "Degraded", "False")
    finally:
        load.stop()
    assert load.outcomes["error"] == 0


def json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON objects ``-o json --watch`` printed one after another, as kubectl prints them."""
    decoder, found, position = json.JSONDecoder(), [], 0
    while text[position:].strip():
        position += len(text[position:]) - len(text[position:].lstrip())
        obj, position = decoder.raw_decode(text, position)
        found.append(obj)
    return found


def test_operator_restart_mid_rollout_resumes_the_same_step(
    kube: Kube, start_operator, stack: LocalStack, prometheus: str
) -> None:  # type: ignore[no-untyped-def]
    operator = start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec([{"weight": 40, "pause": "25s"}, {"weight": 80, "pause": "3s"}])
    _, load = deploy_stable(kube, knative(rollout))
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("the first step", lambda: (status(kube).get("rollout") or {}).get("stepStartedAt"),
                  timeout=180)  # fmt: skip
        before = status(kube)["rollout"]
        isvc_before = kube.isvc("digits")
        assert isvc_before is not None
        operator.kill()
        time.sleep(3)
        start_operator("--prometheus-address", prometheus, env=ENV_FAST)
        time.sleep(5)
        after = status(kube)["rollout"]
        assert after["step"] == before["step"] == 0
        assert after["stepStartedAt"] == before["stepStartedAt"]  # the step's clock was kept
        isvc_after = kube.isvc("digits")
        assert isvc_after is not None
        # No flapping: the restarted operator re-applied the same spec (no new generation).
        assert isvc_after["metadata"]["generation"] == isvc_before["metadata"]["generation"]
        assert isvc_after["spec"]["predictor"]["canaryTrafficPercent"] == 40
        walk(kube, {"Promoted", "RolledBack"})
    finally:
        load.stop()
    assert phase(kube) == "Promoted"
    assert load.outcomes["error"] == 0


def test_standard_mode_splits_with_an_httproute(
    kube: Kube, start_operator, api_client: client.ApiClient, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    start_operator(env=ENV_FAST)  # no Prometheus: readiness and live golden parity only
    rollout = canary_spec([{"weight": 30, "pause": "3s"}, {"weight": 60, "pause": "3s"}])
    kube.create("digits", digits_spec(rollout=rollout))
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    stable_uri = status(kube)["revisions"]["stableUri"]
    custom = client.CustomObjectsApi(api_client)

    weights: list[tuple[int, ...]] = []
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            try:
                route = custom.get_namespaced_custom_object(
                    *GATEWAY[:2], namespace, GATEWAY[2], "digits-traffic"
                )
            except client.ApiException:
                route = None
            if route is not None:
                now = tuple(ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"])
                if not weights or weights[-1] != now:
                    weights.append(now)
            time.sleep(0.1)

    recorder = threading.Thread(target=record, daemon=True)
    recorder.start()
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        walk(kube, {"Promoted", "RolledBack"})
        kube.wait("the canary InferenceService to go", lambda: kube.isvc("digits-canary") is None)
        time.sleep(1)
    finally:
        stop.set()
        recorder.join()
    assert phase(kube) == "Promoted", status(kube)
    # Every step's weights, then all on the canary while stable rolls, then all on stable.
    assert weights[-1] == (100,)
    for step in ((70, 30), (40, 60), (0, 100)):
        assert step in weights, weights
    assert weights.index((70, 30)) < weights.index((40, 60)) < weights.index((0, 100))
    # Named so that KServe 0.20's own top-level route "digits" can never collide with it.
    route = custom.get_namespaced_custom_object(
        *GATEWAY[:2], namespace, GATEWAY[2], "digits-traffic"
    )
    assert route["spec"]["hostnames"] == [f"digits.{namespace}.example.com"]
    assert route["spec"]["parentRefs"][0]["name"] == "kserve-ingress-gateway"
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "digits-predictor"
    isvc = kube.isvc("digits")
    assert isvc is not None
    new = status(kube)["artifact"]
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == new["uri"] != stable_uri
    assert status(kube)["rollout"]["analysis"]["parityMaxAbsDiff"] < 0.01
