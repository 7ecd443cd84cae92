"""``make bench`` for the foundation: control plane start-up and spec validation throughput.

Figures only; nothing here asserts a speed. Run on the machine you want numbers for.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import yaml

from modeldeploy.api.crd import render_yaml
from modeldeploy.api.validation import validate_document
from tests.support import Assets, ControlPlane

REPO = Path(__file__).resolve().parents[2]
STARTS = 3
VALIDATIONS = 2000


def bench_control_plane(assets: Assets) -> list[float]:
    times = []
    for _ in range(STARTS):
        with tempfile.TemporaryDirectory() as tmp:
            plane = ControlPlane(Path(tmp), assets)
            start = time.perf_counter()
            plane.start()
            times.append(time.perf_counter() - start)
            plane.stop()
    return times


def bench_validation() -> float:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "examples").glob("*.yaml"))]
    start = time.perf_counter()
    for i in range(VALIDATIONS):
        assert not validate_document(docs[i % len(docs)])
    return VALIDATIONS / (time.perf_counter() - start)


def main() -> None:
    start = time.perf_counter()
    assets = Assets.provide()
    provide = time.perf_counter() - start
    starts = bench_control_plane(assets)
    rate = bench_validation()
    start = time.perf_counter()
    render_yaml()
    crd = time.perf_counter() - start
    print("benchmark                                         value")
    print(f"envtest assets (cached: setup.sh check only)      {provide:8.2f} s")
    print(
        f"control plane start to CRDs established (n={STARTS})  "
        f"median {statistics.median(starts):.2f} s, max {max(starts):.2f} s"
    )
    print(f"modeldeploy validate, examples                    {rate:8.0f} docs/s")
    print(f"CRD generation from the models                    {crd * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
