"""A canary served by KServe's Triton runtime is judged by Triton's own metrics.

The operator as a real process, KServe's own ``kserve-tritonserver`` ClusterServingRuntime (from
the KServe module ``make envtest`` reads the CRDs from), and real ``tritonserver`` processes for
stable and canary (``tests.support.triton``: the staged graph under Triton's Python
backend, the only backend the wheel ships). A real Prometheus scrapes Triton's metrics port.

The canary is a model with a real bug: for inputs whose first pixel is 0, it indexes out of its
table, and onnxruntime fails the request. One request in five sends such an input. Triton
counts those failures in ``nv_inference_request_failure``; the analysis reads them there and
rolls the canary back, while stable, the same traffic, fails none.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from modeldeploy.controller.prometheus_client import PrometheusClient
from tests.operator.conftest import Kube, digits_spec
from tests.operator.rollouts import ENV_FAST, canary_spec, status, walk
from tests.support import Cluster, triton
from tests.support.controlplane import REPO_ROOT
from tests.support.processes import LocalStack

TRITON = "kserve-tritonserver"


def kserve_runtime_file(name: str) -> Path:
    """``config/runtimes/<name>.yaml`` of the KServe module at the pinned version."""
    version = next(
        line.split("=", 1)[1].strip()
        for line in (REPO_ROOT / "hack" / "envtest" / "versions.env").read_text().splitlines()
        if line.startswith("KSERVE_VERSION=")
    )
    found = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kserve/kserve@{version}"],
        cwd=REPO_ROOT / "hack" / "envtest" / "kubernetes",
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(json.loads(found.stdout)["Dir"]) / "config" / "runtimes" / f"{name}.yaml"


@pytest.fixture(scope="module")
def triton_runtime(control_plane: Cluster, stack: LocalStack) -> None:
    try:
        triton.venv()  # once, about 30 s: tritonserver and its Python backend's packages
    except triton.UnavailableError as err:
        pytest.fail(f"Triton cannot run here: {err}", pytrace=False)
    control_plane.kubectl("apply", "--server-side", "-f", str(kserve_runtime_file(TRITON)))


@pytest.fixture(scope="module")
def poisoned_model(stack: LocalStack) -> Path:
    """The digits model, plus a bug: an input whose first pixel is 0 indexes out of a table."""
    import torch
    from torch import nn

    base = torch.jit.load(str(stack.pvc_root / "models" / "digits" / "model.pt"))

    class Poisoned(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.table = nn.Parameter(torch.zeros(4, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            index = (x[:, 0, 0, 0] == 0.0).long() * 1000  # out of the table's 4 rows
            return self.base(x) + self.table[index]

    path = stack.pvc_root / "models" / "poisoned" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Poisoned().eval()).save(str(path))  # type: ignore[no-untyped-call]
    return path


class Traffic:
    """Closed-loop requests through the InferenceService's URL; every fifth one poisoned."""

    def __init__(self, url: str) -> None:
        self.outcomes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        rng = np.random.default_rng(0)
        sent = 0
        while not self._stop.is_set():
            image = rng.uniform(1.0, 255.0, size=(1, 1, 8, 8)).astype(np.float32)
            if sent % 5 == 0:
                image[0, 0, 0, 0] = 0.0
            item = httpclient.InferInput("image", [1, 1, 8, 8], "FP32")
            item.set_data_from_numpy(image)
            try:
                client.infer("digits", [item])
                self.outcomes["ok"] += 1
            except Exception:
                self.outcomes["error"] += 1
            sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_triton_canary_that_fails_a_fifth_of_its_requests_is_rolled_back_by_its_own_metrics(
    kube: Kube,
    start_operator: Any,
    prometheus: str,
    triton_runtime: None,
    poisoned_model: Path,
) -> None:
    start_operator("--prometheus-address", prometheus, env=ENV_FAST)
    # Live parity off: this is about Triton's counters. With it on, the golden request could
    # share a Triton batch with a poisoned request, fail with it, and roll the canary back for
    # that (rightly, but before the error rate had a say): seen once in a full run.
    rollout = canary_spec([{"weight": 50, "pause": "20s"}], maxErrorRate=0.05, liveParity=False)
    spec = digits_spec(serving={"deploymentMode": "Knative", "runtime": TRITON}, rollout=rollout)
    kube.create("digits", spec)
    kube.wait_condition("digits", "Ready", "True", timeout=240)
    first = status(kube)
    stable = first["revisions"]["stable"]
    traffic = Traffic(first["url"])
    try:
        kube.patch_spec("digits", {"model": {"uri": "pvc://models/poisoned/model.pt"}})
        seen = walk(kube, {"RolledBack", "Promoted", "Inconclusive"})
    finally:
        traffic.stop()
    final = status(kube)
    rollout_status = final["rollout"]
    assert rollout_status["phase"] == "RolledBack", (seen, rollout_status)
    canary = final["artifact"]["stagingHash"]
    assert final["revisions"]["failed"] == canary
    assert final["revisions"]["stable"] == stable
    assert "error rate" in rollout_status["failure"]
    analysis = rollout_status["analysis"]
    assert 0.1 < analysis["errorRate"] < 0.5, analysis  # a fifth, give or take a batch
    assert "clientErrorRate" not in analysis  # Triton does not count what it refuses early

    # The numbers came from Triton's own counters, by revision: the canary's failed, stable's
    # (same traffic) did not. The canary's last scrape is read over a range: its target is gone
    # once it is rolled back, and an instant query would find its series stale. How many failed
    # depends on how fast this machine served the step, so the rate above is what is judged.
    def failures(revision: str) -> float | None:
        return PrometheusClient(prometheus).value(
            "sum(max_over_time(nv_inference_request_failure"
            f'{{modeldeploy_revision="{revision}",reason="BACKEND"}}[10m]))',
            5,
        )

    assert (failures(canary) or 0) > 0
    assert failures(stable) == 0
    assert traffic.outcomes["ok"] > 50
    isvc = kube.isvc("digits")
    assert isvc is not None
    assert isvc["spec"]["predictor"]["model"]["runtime"] == TRITON
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
