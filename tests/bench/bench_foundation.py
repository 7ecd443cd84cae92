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
from tests.support.controllers import Controllers
from tests.support.kserve import KServe
from tests.support.kubelet.node import NodeShape, register

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


def bench_kserve_cluster(assets: Assets) -> list[tuple[float, float, float]]:
    """(control plane, + kube-controller-manager and kube-scheduler, + KServe's manager serving
    its webhooks and a registered node) in seconds, each from the start, per start: what
    tests/cluster/test_kserve_controller.py waits for."""
    from kubernetes import config

    times = []
    for _ in range(STARTS):
        with tempfile.TemporaryDirectory() as tmp:
            plane = ControlPlane(Path(tmp) / "plane", assets)
            controllers = Controllers(plane, Path(tmp) / "controllers")
            kserve = KServe(plane, Path(tmp) / "kserve")
            start = time.perf_counter()
            plane.start()
            up = time.perf_counter() - start
            try:
                controllers.start()
                with_controllers = time.perf_counter() - start
                kserve.start()
                register(config.new_client_from_config(config_file=str(plane.kubeconfig)),
                         NodeShape(gpus=4))  # fmt: skip
                times.append((up, with_controllers, time.perf_counter() - start))
            finally:
                kserve.stop()
                controllers.stop()
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
    clusters = bench_kserve_cluster(assets)
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
    for label, index in (("control plane (in the KServe cluster)", 0),
                         ("+ controller-manager and scheduler healthy", 1),
                         ("+ KServe's manager serving webhooks, node registered", 2)):  # fmt: skip
        values = [t[index] for t in clusters]
        print(f"{label} (n={len(values)}): median {statistics.median(values):.2f} s, "
              f"max {max(values):.2f} s from the start")  # fmt: skip
    print(f"modeldeploy validate, examples                    {rate:8.0f} docs/s")
    print(f"CRD generation from the models                    {crd * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
