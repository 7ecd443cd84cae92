"""``make bench`` for the runtime: ResNet-18 (224x224, CPU) behind three servers on this machine,
driven by tritonclient over gRPC at concurrency 1, 8 and 32, one sample per request.

- modeldeploy: ``modeldeploy serve`` on the staged artifact (dynamic batching up to 32, 2 ms);
- plain kserve: a ``kserve.Model`` calling onnxruntime once per request (tests/bench/plain_kserve.py);
- Triton: ``tritonserver`` from the nvidia-pytriton wheel, when ``tests/bench/triton.py`` can set
  it up (see there), with dynamic batching on.

Also times one in-process onnxruntime call at batch 1, the floor for the latency at concurrency 1.
Load generator and servers share the machine's cores; figures are for comparison within one run.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

from modeldeploy.api.validation import parse
from modeldeploy.staging.stage import stage
from modeldeploy.testing.controlplane import REPO_ROOT, free_port
from tests.runtime.server import stop
from tests.staging import models

DURATION = float(os.environ.get("BENCH_SECONDS", "8"))
LEVELS = (1, 8, 32)


def stage_resnet(root: Path) -> Path:
    source = models.save(models.build_resnet18().eval(), root / "resnet18.pt")
    spec = parse(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "resnet18"},
            "spec": {
                "model": {
                    "uri": f"file://{source}",
                    "format": "pytorch",
                    "inputs": [{"name": "image", "shape": [3, 224, 224]}],
                },
                "optimization": {"parity": {"samples": 4}},
                "serving": {"batching": {"maxBatchSize": 32, "maxQueueDelay": "2ms"}},
            },
        }
    )
    return Path(stage(spec, str(root / "store")).uri.removeprefix("file://"))


@contextlib.contextmanager
def process(
    args: list[str], grpc_port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if client.is_model_ready("resnet18"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield
    finally:
        stop(proc)


def load(grpc_port: int, concurrency: int) -> dict[str, float]:
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 1.5 + DURATION
    measure_from = time.monotonic() + 1.5  # warm-up

    def worker() -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        item = grpcclient.InferInput("image", [1, 3, 224, 224], "FP32")
        item.set_data_from_numpy(x)
        mine = []
        while (now := time.monotonic()) < stop:
            client.infer("resnet18", [item])
            if now >= measure_from:
                mine.append(time.monotonic() - now)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return {
        "throughput": len(latencies) / DURATION,
        "p50": 1000 * latencies[len(latencies) // 2],
        "p99": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def in_process_ms(model: Path) -> float:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    session.run(None, {"image": x})
    times = []
    for _ in range(30):
        start = time.perf_counter()
        session.run(None, {"image": x})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    results: dict[str, dict[int, dict[str, float]]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        artifact = stage_resnet(root)
        model_dir = artifact / "resnet18"
        servers: dict[str, Any] = {}
        http, grpc = free_port(), free_port()
        servers["modeldeploy"] = (
            [
                sys.executable,
                "-m",
                "modeldeploy",
                "serve",
                str(artifact),
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
            ],
            grpc,
            None,
        )
        http2, grpc2 = free_port(), free_port()
        servers["plain kserve"] = (
            [
                sys.executable,
                "-m",
                "tests.bench.plain_kserve",
                str(model_dir),
                str(http2),
                str(grpc2),
            ],
            grpc2,
            None,
        )
        from tests.bench import triton

        try:
            servers["Triton"] = triton.server(model_dir, root / "triton")
        except triton.UnavailableError as err:
            notes.append(f"Triton not measured: {err}")
        for name, (args, port, env) in servers.items():
            with process(args, port, root / f"{name}.log", env):
                results[name] = {c: load(port, c) for c in LEVELS}
        floor = in_process_ms(model_dir / "1" / "model.onnx")

    print(
        f"ResNet-18 224x224 FP32, CPU ({os.cpu_count()} cores shared with the load generator), gRPC, {DURATION:.0f} s per level\n"
    )
    print("| server | concurrency | throughput req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, levels in results.items():
        for c, r in levels.items():
            print(f"| {name} | {c} | {r['throughput']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    ours = results["modeldeploy"]
    print()
    for other in (n for n in results if n != "modeldeploy"):
        ratios = ", ".join(
            f"c={c}: {ours[c]['throughput'] / results[other][c]['throughput']:.2f}x" for c in LEVELS
        )
        print(f"modeldeploy throughput / {other}: {ratios}")
    print(
        f"in-process onnxruntime, batch 1: {floor:.2f} ms; modeldeploy p50 at c=1 is {ours[1]['p50'] - floor:+.2f} ms over it"
    )
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
