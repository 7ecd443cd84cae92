"""No promotion without evidence: the canary analysis against a real Prometheus scraping real
runtimes, the operator as a real process, traffic through the executor's router.

- A canary Prometheus never scrapes (as with a missing PodMonitor) ends Inconclusive, with the
  missing series named; it is neither promoted nor rolled back, and abort rolls it back.
- A step whose window holds fewer than ``minRequests`` canary requests is Inconclusive; resume
  retries it, and with enough requests it passes.
- A flood of malformed client requests (400) is not counted as canary errors.
- Every example's custom queries return data from a scraped runtime.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from modeldeploy.controller.analysis import custom_query
from modeldeploy.controller.prometheus_client import PrometheusClient
from modeldeploy.controller.rollout import Target
from tests.operator.conftest import Kube
from tests.operator.rollouts import (
    ENV_FAST,
    canary_spec,
    cli,
    deploy_stable,
    knative,
    phase,
    status,
)
from tests.support import Assets
from tests.support.controlplane import REPO_ROOT
from tests.support.processes import LocalStack
from tests.support.prometheus import Prometheus, file_targets


class StableOnlyTargets:
    """A copy of the executor's Prometheus targets without the canary's: a Prometheus reading
    it scrapes stable's pods and never the canary's, as when the canary's pods miss the label
    a PodMonitor selects."""

    def __init__(self, source: Path, target: Path, stable: str) -> None:
        self.source, self.target, self.stable = source, target, stable
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._copy()
        self._thread.start()

    def _copy(self) -> None:
        try:
            entries = json.loads(self.source.read_text())
        except (OSError, ValueError):
            return
        kept = [e for e in entries if e["labels"].get("modeldeploy_revision") == self.stable]
        temporary = self.target.with_suffix(".tmp")
        temporary.write_text(json.dumps(kept))
        os.replace(temporary, self.target)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._copy()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def send(url: str, n: int, dtype: str = "FP32") -> int:
    """``n`` requests in the digits model's shape through ``url``; how many were answered.
    ``INT64`` sends the wrong datatype: the runtime refuses it as the client's fault (400)."""
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    item = httpclient.InferInput("image", [1, 1, 8, 8], dtype)
    array = np.random.default_rng(n).random((1, 1, 8, 8))
    item.set_data_from_numpy(array.astype(np.float32 if dtype == "FP32" else np.int64))
    answered = 0
    for _ in range(n):
        try:
            client.infer("digits", [item])
            answered += 1
        except Exception:
            pass
    client.close()
    return answered


def query(prometheus: str, promql: str) -> float | None:
    return PrometheusClient(prometheus).value(promql, timeout=5)


def eventually(read: Any, seconds: float) -> Any:
    """What ``read()`` returns once it is not None, or None after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (value := read()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


@pytest.fixture
def blind_prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus of the test's own, and the targets file it reads (empty at first)."""
    targets = tmp_path / "targets.json"
    server = Prometheus.start(Assets.provide(), tmp_path / "prometheus", file_targets(targets))
    yield server.url, targets
    server.stop()


def test_a_canary_that_prometheus_never_scrapes_ends_inconclusive_and_is_not_promoted(
    kube: Kube,
    start_operator: Any,
    stack: LocalStack,
    namespace: str,
    blind_prometheus: tuple[str, Path],
) -> None:
    address, targets = blind_prometheus
    start_operator("--prometheus-address", address, env=ENV_FAST)
    first, load = deploy_stable(kube, knative(canary_spec([{"weight": 50, "pause": "5s"}])))
    stable = first["revisions"]["stable"]
    executor_targets = stack.workdir / "executor" / "prometheus-targets.json"
    scraped = StableOnlyTargets(executor_targets, targets, stable)
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("Inconclusive", lambda: phase(kube) == "Inconclusive", timeout=180)
        held = status(kube)
        time.sleep(3)  # held: no promotion, no rollback, whatever the clock says
        again = status(kube)
    finally:
        scraped.stop()
    for found in (held, again):
        assert found["rollout"]["phase"] == "Inconclusive"
        assert found["traffic"]["canary"] == 50
        assert found["revisions"]["stable"] == stable
        assert "failed" not in found["revisions"]
    why = held["rollout"]["inconclusive"]
    assert "no series for modeldeploy_requests_total{" in why
    assert f'modeldeploy_revision="{held["artifact"]["stagingHash"]}"' in why
    assert "is the modeldeploy runtime scraped? see docs/canary.md#labels" in why
    assert held["rollout"]["analysis"]["passed"] is False
    assert not held["rollout"]["analysis"].get("failures")
    condition = kube.condition("digits", "RolloutProgressing")
    assert condition["reason"] == "Inconclusive"
    assert "modeldeploy resume" in condition["message"]
    assert kube.condition("digits", "Degraded")["status"] == "False"
    kube.wait(
        "the Inconclusive Event",
        lambda: ("Warning", "RolloutInconclusive") in kube.events("digits"),
    )
    # Stable was scraped all along: the blindness is the canary's alone.
    assert query(address, f'count(modeldeploy_requests_total{{modeldeploy_revision="{stable}"}})')
    assert "Inconclusive, step 1/1 (target 50%)" in cli(stack, "status", "digits", "-n", namespace)

    cli(stack, "abort", "digits", "-n", namespace)
    kube.wait("Aborted", lambda: phase(kube) == "Aborted")
    kube.wait("0% on the canary", lambda: status(kube)["traffic"]["canary"] == 0)
    load.stop()
    assert load.outcomes["error"] == 0


def test_a_step_needs_min_requests_of_evidence_and_resume_retries_it(
    kube: Kube, start_operator: Any, stack: LocalStack, namespace: str, prometheus: str
) -> None:
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec([{"weight": 100, "pause": "12s"}], minRequests=50, liveParity=False)
    kube.create("digits", knative(rollout))
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    url = status(kube)["url"]

    def step_started() -> str | None:
        return (status(kube).get("rollout") or {}).get("stepStartedAt")  # type: ignore[no-any-return]

    kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
    first_clock = kube.wait("the step's clock", step_started, timeout=180)
    canary = status(kube)["artifact"]["stagingHash"]
    # Sent before the canary's first scrape, requests would be in the series' first sample,
    # which no increase() can see: wait until Prometheus has the canary at 0.
    kube.wait(
        "the canary's first scrape",
        lambda: query(
            prometheus, f'count(modeldeploy_requests_total{{modeldeploy_revision="{canary}"}})'
        ),
    )
    time.sleep(2.5)  # and a scrape inside the step's window, before the requests
    assert send(url, 10) == 10  # all of it on the canary (weight 100)
    kube.wait("Inconclusive", lambda: phase(kube) == "Inconclusive", timeout=60)
    thin = status(kube)["rollout"]
    assert 5 <= thin["analysis"]["requests"] < 50, thin["analysis"]
    assert "fewer than minRequests 50" in thin["inconclusive"]
    assert "see docs/canary.md#urls" in thin["inconclusive"]
    assert status(kube)["revisions"].get("failed") is None

    cli(stack, "resume", "digits", "-n", namespace)
    second_clock = kube.wait(
        "the step's clock to start again",
        lambda: phase(kube) == "Progressing" and (c := step_started()) != first_clock and c,
    )
    assert second_clock
    annotations = (kube.get("digits") or {})["metadata"].get("annotations") or {}
    assert "modeldeploy.io/resume" not in annotations
    time.sleep(2.5)
    assert send(url, 60) == 60
    kube.wait("Promoted", lambda: phase(kube) == "Promoted", timeout=60)
    final = status(kube)["rollout"]["analysis"]
    assert final["passed"] is True
    assert final["requests"] >= 50
    assert final["errorRate"] == 0


def test_a_flood_of_client_errors_does_not_roll_back_a_healthy_canary(
    kube: Kube, start_operator: Any, prometheus: str
) -> None:
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    rollout = canary_spec([{"weight": 50, "pause": "10s"}], maxErrorRate=0.05)
    first, load = deploy_stable(kube, knative(rollout))
    refused = {"n": 0}
    stop = threading.Event()

    def flood() -> None:
        # As many malformed requests as good ones or more, but paced: unpaced on two cores, the
        # flood starved the canary's /metrics, its scrapes timed out, and with no evidence the
        # step was (rightly) Inconclusive.
        while not stop.wait(0.25):
            refused["n"] += 10 - send(first["url"], 10, dtype="INT64")

    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    try:
        kube.patch_spec("digits", {"optimization": {"precision": "fp16"}})
        kube.wait("the end of the rollout",
                  lambda: phase(kube) in ("Promoted", "RolledBack"), timeout=180)  # fmt: skip
    finally:
        stop.set()
        flooding.join(10)
        load.stop()
    final = status(kube)
    assert final["rollout"]["phase"] == "Promoted", final["rollout"]
    assert final["rollout"]["analysis"]["errorRate"] == 0
    canary = final["artifact"]["stagingHash"]
    invalid = query(
        prometheus,
        f'sum(modeldeploy_requests_total{{modeldeploy_revision="{canary}",outcome="invalid"}})',
    )
    # The canary itself refused many of the flood's requests, and none counted as its errors.
    assert invalid is not None
    assert invalid > 50
    assert refused["n"] > 100
    assert load.outcomes["error"] == 0


def test_every_examples_custom_queries_return_data_from_a_scraped_runtime(
    kube: Kube, start_operator: Any, namespace: str, prometheus: str
) -> None:
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    first, load = deploy_stable(kube, knative(canary_spec([{"weight": 50, "pause": "5s"}])))
    revision = first["revisions"]["stable"]
    checked = []
    try:
        for example in sorted((REPO_ROOT / "examples").glob("*.yaml")):
            for doc in yaml.safe_load_all(example.read_text()):
                analysis = doc["spec"].get("rollout", {}).get("analysis", {})
                for check in analysis.get("queries") or []:
                    # The runtime under test plays both revisions of the example's deployment.
                    target = Target(namespace, "digits", "digits", revision, revision, None,
                                    "", None, 30, "modeldeploy-onnx", True)  # fmt: skip
                    promql = custom_query(check["query"], target)
                    # A rate needs two scrapes with traffic inside its window: wait for them
                    # (a scrape can time out on a loaded machine) rather than for a fixed time.
                    value = eventually(lambda q=promql: query(prometheus, q), seconds=60)
                    assert value is not None, f"{example.name} {check['name']}: no data: {promql}"
                    checked.append((example.name, check["name"], value))
    finally:
        load.stop()
    assert len(checked) >= 2, checked
