"""``make bench`` for canary rollouts: what a rollout costs beyond its pauses, how fast traffic
returns to stable, and how long one analysis run takes.

Everything is real except the kubelet and KServe, which the local executor plays (it runs each
revision as a real ``modeldeploy serve`` behind a weighted router and writes the traffic status
KServe would). A real Prometheus scrapes the runtimes every second; tritonclient sends steady
load. Figures only; nothing here asserts a speed.

1. rollout overhead: a canary of two steps (50%, then 80%, each held 5 s, analysis every 1 s)
   from "the new artifact is staged" to Promoted, minus the 10 s of pauses.
2. abort → stable: ``modeldeploy.io/abort`` set on a canary at 50%, until KServe's traffic
   status (the router's weights) shows 0% on the canary; n=3.
3. error canary → rolled back: a canary whose model rejects the clients' requests, from its
   step's weight being confirmed until the status says RolledBack (analysis every 1 s, 5 s
   minimum window).
4. one analysis run (golden requests with tritonclient and the Prometheus queries) against a
   live canary; n=30.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from modeldeploy.api.rollout import Analysis
from modeldeploy.artifacts.store import tenant_store
from modeldeploy.controller.analysis import run_checks
from modeldeploy.controller.prometheus_client import PrometheusClient
from modeldeploy.controller.rollout import Target
from tests.bench.bench_operator import audited_writes, client_of, resource_of
from tests.support import Assets, ControlPlane
from tests.support.controlplane import REPO_ROOT
from tests.support.demo_model import build_digits_model, build_wide_model
from tests.support.load import Load
from tests.support.processes import LocalStack
from tests.support.prometheus import Prometheus, file_targets

MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
NS = "bench"
PAUSE_S = 5
STEPS = 2


class Bench:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(*MD[:2], NS, MD[2], name)
        return found

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(*MD[:2], NS, MD[2], name, body)

    def wait(self, what: str, check: Any, timeout: float = 300, every: float = 0.02) -> float:
        """Poll until ``check()``; the monotonic time it first held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return time.monotonic()
            time.sleep(every)
        raise RuntimeError(f"timed out waiting for {what}: {self.status('digits')}")

    def phase(self, name: str = "digits") -> str:
        return str((self.status(name).get("rollout") or {}).get("phase", ""))

    def canary_weight(self) -> int:
        return int((self.status("digits").get("traffic") or {}).get("canary", 0))

    def canary_at(self, weight: int) -> bool:
        """The current spec's canary, progressing, at ``weight`` as read back."""
        s = self.status("digits")
        return bool(
            (s.get("rollout") or {}).get("phase") == "Progressing"
            and (s.get("revisions") or {}).get("canary")
            == (s.get("artifact") or {}).get("stagingHash")
            and (s.get("traffic") or {}).get("canary") == weight
        )

    def annotations(self) -> dict[str, str]:
        return dict(self.get("digits")["metadata"].get("annotations") or {})


def spec() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    body = doc["spec"]
    body["serving"]["deploymentMode"] = "Knative"
    body["rollout"] = {
        "steps": [{"weight": 50, "pause": f"{PAUSE_S}s"}, {"weight": 80, "pause": f"{PAUSE_S}s"}],
        "analysis": {"interval": "1s", "maxErrorRate": 0.05, "maxP99LatencyMs": 1000},
    }
    return body


def new_artifact(bench: Bench, n: int) -> None:
    """A spec change that stages a new artifact: another parity tolerance each time."""
    bench.patch("digits", {"spec": {"optimization": {"parity": {"atol": 0.001 + n * 1e-5}}}})


def _now() -> str:
    """Now as the audit log's stageTimestamp writes it (RFC 3339, microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bench_rollout(bench: Bench) -> tuple[float, str, str]:
    """The overhead, and when the spec changed and when Promoted was seen (audit log times)."""
    since = _now()
    new_artifact(bench, 1)
    staged = bench.wait(
        "the canary to be staged",
        lambda: (bench.status("digits").get("rollout") or {}).get("phase") == "Progressing",
        every=0.05,
    )
    promoted = bench.wait("Promoted", lambda: bench.phase() == "Promoted", every=0.05)
    return promoted - staged - 2 * PAUSE_S, since, _now()


TRANSITION_KEYS = {"phase", "step", "stepStartedAt"}


def rollout_writes(audit_log: Path, since: str, until: str) -> Counter[str]:
    """The operator's writes from the spec change to Promoted, by what they are. A status patch
    that moves the rollout (phase, step, step clock, revisions, artifact) is a transition; one
    that only records an analysis run's numbers (and the condition message quoting them) is
    not."""
    counted: Counter[str] = Counter()
    for event in audited_writes(audit_log, NS, since, until):
        if client_of(event) != "operator":
            continue
        what = f"{event.get('verb')} {resource_of(event)}"
        if resource_of(event) == "modeldeployments/status":
            status = (event.get("requestObject") or {}).get("status") or {}
            moved = TRANSITION_KEYS & set(status.get("rollout") or {}) or {
                "revisions", "artifact"} & set(status)  # fmt: skip
            what += " (a transition)" if moved else " (analysis numbers only)"
        counted[what] += 1
    return counted


def bench_abort(bench: Bench, n: int) -> float:
    new_artifact(bench, n)
    bench.wait("the canary at 50%", lambda: bench.canary_at(50), every=0.05)
    start = time.monotonic()
    bench.patch("digits", {"metadata": {"annotations": {"modeldeploy.io/abort": "true"}}})
    isvc = lambda: bench.custom.get_namespaced_custom_object(*ISVC[:2], NS, ISVC[2], "digits")  # noqa: E731
    done = bench.wait(
        "traffic back on stable",
        lambda: sum(
            t["percent"] for t in isvc()["status"]["components"]["predictor"]["traffic"]
            if t.get("latestRevision")
        ) == 0,
    )  # fmt: skip
    bench.wait("Aborted, and the annotation cleared",
               lambda: bench.phase() == "Aborted" and "modeldeploy.io/abort" not in bench.annotations())  # fmt: skip
    return done - start


def bench_error_canary(bench: Bench) -> float:
    # A step long enough for Prometheus to find and scrape the new revision: its first sample
    # came 6 s after it took traffic here, and a step that ends before any sample is (rightly)
    # Inconclusive, not RolledBack.
    steps = [{"weight": 50, "pause": "30s"}, {"weight": 80, "pause": "30s"}]
    bench.patch("digits", {"spec": {"rollout": {"steps": steps}, "model": {
        "uri": "pvc://models/wide/model.pt", "inputs": [{"name": "image", "shape": [1, 16, 16]}],
        "preprocessing": {"resize": {"height": 16, "width": 16}, "scale": 1 / 255}}}})  # fmt: skip
    confirmed = bench.wait(
        "the error canary at its step",
        lambda: (
            (bench.status("digits").get("rollout") or {}).get("stepStartedAt")
            and bench.canary_weight() == 50
        ),
        every=0.05,
    )
    rolled = bench.wait("RolledBack", lambda: bench.phase() == "RolledBack", every=0.05)
    return rolled - confirmed


def bench_analysis(bench: Bench, prometheus: str, store: str) -> list[float]:
    new_artifact(bench, 9)
    bench.wait("a canary at 50%", lambda: bench.canary_at(50), every=0.05)
    bench.patch("digits", {"metadata": {"annotations": {"modeldeploy.io/pause": "true"}}})
    status = bench.status("digits")
    isvc = bench.custom.get_namespaced_custom_object(*ISVC[:2], NS, ISVC[2], "digits")
    url = next(t["url"] for t in isvc["status"]["components"]["predictor"]["traffic"]
               if t.get("tag") == "latest")  # fmt: skip
    target = Target(NS, "digits", "digits", status["revisions"]["canary"],
                    status["revisions"]["stable"], url, tenant_store(store, NS),
                    status["artifact"]["key"], 30,
                    "modeldeploy-onnx", True)  # fmt: skip
    analysis = Analysis.model_validate({"maxP99LatencyMs": 1000, "maxLatencyRatio": 10})
    times = []
    for _ in range(30):
        start = time.perf_counter()
        result = run_checks(analysis, target, PrometheusClient(prometheus), 10, datetime.now(UTC))
        times.append(time.perf_counter() - start)
        if result.failures:  # inconclusive is fine here: it is the run's time that is measured
            raise RuntimeError(f"analysis failed: {result.failures}")
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-canary-") as tmp:
        work = Path(tmp)
        assets = Assets.provide()
        plane = ControlPlane(work / "plane", assets, audit=True)
        plane.start()
        stack = LocalStack(plane.kubeconfig, work / "processes", work / "pvc")
        prom = None
        load = None
        store = "pvc://artifacts/store"
        try:
            plane.kubectl(
                "apply",
                "--server-side",
                "-f",
                str(REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"),
            )
            plane.kubectl("create", "namespace", NS)
            build_digits_model(stack.pvc_root / "models" / "digits" / "model.pt")
            build_wide_model(stack.pvc_root / "models" / "wide" / "model.pt")
            stack.executor()
            prom = Prometheus.start(assets, work / "prometheus",
                                    file_targets(stack.workdir / "executor" / "prometheus-targets.json"))  # fmt: skip
            stack.operator("--artifact-store", store, "--prometheus-address", prom.url,
                           env={"MODELDEPLOY_METRICS_MIN_WINDOW_SECONDS": "5"})  # fmt: skip
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            bench = Bench(api)
            bench.custom.create_namespaced_custom_object(*MD[:2], NS, MD[2], {
                "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": "digits"}, "spec": spec()})  # fmt: skip
            bench.wait("Ready", lambda: bench.status("digits").get("url")
                       and bench.phase() in ("", "Promoted"), every=0.1)  # fmt: skip
            load = Load(bench.status("digits")["url"])
            overhead, since, until = bench_rollout(bench)
            time.sleep(3)  # the audit log is written in batches
            written = rollout_writes(plane.audit_log, since, until)
            print(f"the operator's writes from the spec change to Promoted ({STEPS} steps, "
                  f"analysis every 1 s over {PAUSE_S} s pauses):")  # fmt: skip
            print("| write | count | per step |\n| --- | --- | --- |")
            for what, count in sorted(written.items()):
                print(f"| {what} | {count} | {count / STEPS:.1f} |", flush=True)
            aborts = [bench_abort(bench, n) for n in (2, 3, 4)]
            os.environ["MODELDEPLOY_PVC_ROOT"] = str(
                stack.pvc_root
            )  # golden files, as the operator
            analysis = bench_analysis(bench, prom.url, store)
            bench.patch("digits", {"metadata": {"annotations": {"modeldeploy.io/pause": None}}})
            detection = bench_error_canary(bench)
        finally:
            if load is not None:
                load.stop()
            stack.stop()
            if prom is not None:
                prom.stop()
            plane.stop()
    print("benchmark                                                   value")
    print(f"rollout overhead beyond its 2 x {PAUSE_S} s of pauses                {overhead:.1f} s")
    print(
        f"abort → 0% on the canary (n={len(aborts)})                           "
        f"median {statistics.median(aborts) * 1000:.0f} ms, max {max(aborts) * 1000:.0f} ms"
    )
    print(f"error canary: step confirmed → RolledBack                   {detection:.1f} s")
    ordered = sorted(analysis)
    print(
        f"one analysis run (golden + 4 PromQL, n={len(analysis)})                "
        f"p50 {statistics.median(analysis) * 1000:.0f} ms, p95 {ordered[int(0.95 * (len(ordered) - 1))] * 1000:.0f} ms"
    )
    print(f"client requests during all of it: {dict(load.outcomes) if load else {}}")


if __name__ == "__main__":
    main()
