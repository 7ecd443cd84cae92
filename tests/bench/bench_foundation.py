"""``make bench`` for the foundation: control plane start-up and spec validation throughput.

Figures only; nothing here asserts a speed. Run on the machine you want numbers for.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api.crd import render_yaml
from modeldeploy.api.validation import validate_document
from tests.support import Assets, ControlPlane
from tests.support.cluster import KServeCluster

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


def bench_kserve_cluster(assets: Assets) -> list[dict[str, float]]:
    """Per start of the cluster ``make demo`` and the KServe tests use: when each part was up
    (seconds from the start), then the chart's ``helm install`` until the operator's pod is
    available, then a ModelDeployment (``graphs.dtypes``, ONNX) from create to Ready: the
    staging Job, KServe's predictor, the gateway's routes."""
    from kubernetes import client

    from tests.runtime import graphs

    runs = []
    for _ in range(STARTS):
        with tempfile.TemporaryDirectory() as tmp:
            cluster = KServeCluster(Path(tmp))
            cluster.start(assets)
            try:
                times = dict(cluster.timings)
                cluster.claim("bench", "models")
                cluster.claim("bench", "artifacts", mode=0o777)
                (cluster.pvc_root / "models" / "dtypes").mkdir()
                graphs.dtypes(cluster.pvc_root / "models" / "dtypes" / "model.onnx")
                start = time.perf_counter()
                cluster.install_chart("pvc://artifacts/store", "bench")
                times["helm install to the operator available"] = time.perf_counter() - start
                doc = graphs.dtypes_deployment(
                    "pvc://models/dtypes/model.onnx", namespace="bench",
                    serving={"resources": {"cpu": "1", "memory": "1Gi"}},
                )  # fmt: skip
                custom = client.CustomObjectsApi(cluster.api)
                start = time.perf_counter()
                custom.create_namespaced_custom_object(
                    "modeldeploy.io", "v1alpha1", "bench", "modeldeployments", doc
                )
                while not _ready(custom.get_namespaced_custom_object(
                        "modeldeploy.io", "v1alpha1", "bench", "modeldeployments", "dtypes")):  # fmt: skip
                    if time.perf_counter() - start > 180:
                        raise TimeoutError("the ModelDeployment was not Ready after 180 s")
                    time.sleep(0.1)
                times["ModelDeployment create to Ready"] = time.perf_counter() - start
                runs.append(times)
            finally:
                cluster.stop()
    return runs


def _ready(found: dict[str, Any]) -> bool:
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


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
    print("KServe cluster (tests/support/cluster.py), seconds:")
    for label in clusters[0]:
        values = [t[label] for t in clusters]
        print(f"  {label} (n={len(values)}): median {statistics.median(values):.2f} s, "
              f"max {max(values):.2f} s")  # fmt: skip
    print(f"modeldeploy validate, examples                    {rate:8.0f} docs/s")
    print(f"CRD generation from the models                    {crd * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
