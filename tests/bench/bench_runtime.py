"""``make bench`` for the runtime: ResNet-18 (224x224, CPU) behind three servers on this machine,
driven by the real tritonclient over REST (binary tensors) and gRPC at concurrency 1, 8 and 32,
one sample per request.

- modeldeploy: ``modeldeploy serve`` on the staged artifact (dynamic batching up to 32, 2 ms);
- plain kserve: a ``kserve.Model`` calling onnxruntime once per request (tests/bench/plain_kserve.py);
- Triton: ``tritonserver`` from the nvidia-pytriton wheel, when ``tests/bench/triton.py`` can set
  it up (see there), with dynamic batching on.

Then, for modeldeploy alone:
- an image workload: PNG bytes in, top-5 labels out, over REST (decode and resize in the
  runtime; Triton would need an ensemble for this);
- overload: 128 concurrent REST clients against a queue bound of 64. Requests over the bound are
  refused (503); their p99 is reported apart from the answered ones', and readiness is checked
  after.

Also times one in-process onnxruntime call at batch 1, the floor for the latency at concurrency 1.
Load generator and servers share the machine's cores; figures are for comparison within one run.
The three servers run side by side and each concurrency level is measured on each in turn, so
the machine's drift over minutes falls on all of them alike.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from modeldeploy.api.validation import parse
from modeldeploy.runtime.hardware import cpu_limit
from modeldeploy.staging.stage import stage
from tests.runtime.server import stop
from tests.staging import models
from tests.support.controlplane import REPO_ROOT, free_port

DURATION = float(os.environ.get("BENCH_SECONDS", "8"))
WARM_UP = 1.5
LEVELS = (1, 8, 32)
PROTOCOLS = ("REST", "gRPC")
OVERLOAD_CLIENTS, OVERLOAD_QUEUE = 128, 64
RETRY_AFTER = 1.0
"""What the runtime's 503 says in ``Retry-After``; the second overload run's clients honour it."""


def stage_resnet(
    root: Path, name: str, images: bool = False, reference: Path | None = None
) -> Path:
    source = models.save(models.build_resnet18().eval(), root / f"{name}.pt")
    model: dict[str, Any] = {
        "uri": f"file://{source}",
        "format": "pytorch",
        "inputs": [{"name": "image", "shape": [3, 224, 224]}],
    }
    if images:
        model["preprocessing"] = {
            "resize": {"height": 224, "width": 224},
            "scale": 1 / 255,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        }
        model["postprocessing"] = {"type": "classification", "classification": {"topK": 5}}
    spec = parse(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": model,
                "optimization": {"parity": {"samples": 4}},
                "serving": {"batching": {"maxBatchSize": 32, "maxQueueDelay": "2ms"}},
                **(
                    {"monitoring": {"reference": {"uri": f"file://{reference}"}}}
                    if reference is not None
                    else {}
                ),
            },
        }
    )
    return Path(stage(spec, str(root / f"store-{name}")).uri.removeprefix("file://"))


@dataclass(frozen=True)
class Server:
    args: list[str]
    http: int
    grpc: int
    env: dict[str, str] | None = None


@contextlib.contextmanager
def process(server: Server, model: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server.args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, **(server.env or {})},
            start_new_session=True,
        )
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc}")
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{server.args[0]} exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if client.is_model_ready(model):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.args[0]} not ready:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield
    finally:
        stop(proc)


Call = Callable[[], None]


def rest_call(port: int, model: str, name: str, data: np.ndarray, datatype: str) -> Call:
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    item = httpclient.InferInput(name, list(data.shape), datatype)
    item.set_data_from_numpy(data, binary_data=True)
    return lambda: client.infer(model, [item])


def grpc_call(port: int, model: str, name: str, data: np.ndarray, datatype: str) -> Call:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    item = grpcclient.InferInput(name, list(data.shape), datatype)
    item.set_data_from_numpy(data)
    return lambda: client.infer(model, [item])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def drive(make_call: Callable[[], Call], concurrency: int, backoff: float = 0.0) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for WARM_UP + DURATION seconds; latencies of answered
    and of refused requests apart, from the measured window only. (Spreading the clients over
    several processes was tried for the overload run: more client CPU on 2 cores, worse
    figures for both.)"""
    answered, refused = _latencies(make_call, concurrency, backoff)
    return {
        "throughput": len(answered) / DURATION,
        "p50": percentile(answered, 0.5),
        "p99": percentile(answered, 0.99),
        "refused": len(refused),
        "refused_p50": percentile(refused, 0.5),
        "refused_p99": percentile(refused, 0.99),
    }


def _latencies(
    make_call: Callable[[], Call], concurrency: int, backoff: float
) -> tuple[list[float], list[float]]:
    answered: list[float] = []
    refused: list[float] = []
    lock = threading.Lock()
    measure_from = time.monotonic() + WARM_UP
    end = measure_from + DURATION

    def worker() -> None:
        call = make_call()
        ok, no = [], []
        while (now := time.monotonic()) < end:
            try:
                call()
                (ok if now >= measure_from else []).append(time.monotonic() - now)
            except InferenceServerException:
                (no if now >= measure_from else []).append(time.monotonic() - now)
                time.sleep(backoff)
        with lock:
            answered.extend(ok)
            refused.extend(no)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered, refused


def in_process_ms(model: Path) -> float:
    """Median of 100 batch-1 runs with the session options ``modeldeploy serve`` uses (threads
    from the CPU limit, no spin-waiting): the floor for any server's latency at c=1."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_limit()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    for _ in range(5):
        session.run(None, {"image": x})
    times = []
    for _ in range(100):
        start = time.perf_counter()
        session.run(None, {"image": x})
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def png_image() -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def serve(artifact: Path, *extra: str) -> Server:
    http, grpc = free_port(), free_port()
    args = [sys.executable, "-m", "modeldeploy", "serve", str(artifact)]
    return Server([*args, "--http-port", str(http), "--grpc-port", str(grpc), *extra], http, grpc)


def main() -> None:
    results: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    notes: list[str] = []
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        artifact = stage_resnet(root, "resnet18")
        model_dir = artifact / "resnet18"
        floor = in_process_ms(model_dir / "1" / "model.onnx")  # on the quiet machine
        servers: dict[str, Server] = {"modeldeploy": serve(artifact)}
        http2, grpc2 = free_port(), free_port()
        servers["plain kserve"] = Server(
            [
                sys.executable,
                "-m",
                "tests.bench.plain_kserve",
                str(model_dir),
                str(http2),
                str(grpc2),
            ],
            http2,
            grpc2,
        )
        from tests.bench import triton

        try:
            args, http3, grpc3, env = triton.server(model_dir, root / "triton")
            servers["Triton"] = Server(args, http3, grpc3, env)
        except triton.UnavailableError as err:
            notes.append(f"Triton not measured: {err}")
        # All three run at once, and each level is measured on each server in turn: a slow
        # minute on this shared machine then hits every server alike, not the last one alone.
        with contextlib.ExitStack() as stack:
            for name, server in servers.items():
                stack.enter_context(process(server, "resnet18", root / f"{name}.log"))
                results[name] = {}
            for proto in PROTOCOLS:
                call = rest_call if proto == "REST" else grpc_call
                for c in LEVELS:
                    for name, server in servers.items():
                        port = server.http if proto == "REST" else server.grpc
                        results[name][proto, c] = drive(
                            lambda call=call, port=port: call(port, "resnet18", "image", x, "FP32"),
                            c,
                        )

        images = stage_resnet(root, "resnet18-png", images=True)
        png = np.array([png_image()], dtype=np.object_)
        png_server = serve(images)
        with process(png_server, "resnet18-png", root / "png.log"):
            png_results = {
                c: drive(
                    lambda: rest_call(png_server.http, "resnet18-png", "image", png, "BYTES"), c
                )
                for c in LEVELS
            }
        overload_server = serve(artifact, "--max-queue-size", str(OVERLOAD_QUEUE))
        with process(overload_server, "resnet18", root / "overload.log"):
            overload = {
                backoff: drive(
                    lambda: rest_call(overload_server.http, "resnet18", "image", x, "FP32"),
                    OVERLOAD_CLIENTS,
                    backoff,
                )
                for backoff in (0.0, RETRY_AFTER)
            }
            url = f"http://127.0.0.1:{overload_server.http}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=10) as answer:
                ready_after = answer.status == 200

    print(
        f"ResNet-18 224x224 FP32, CPU ({os.cpu_count()} cores shared with the load generator), "
        f"one sample per request, {DURATION:.0f} s per level\n"
    )
    print("| server | protocol | concurrency | throughput req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, levels in results.items():
        for (proto, c), r in levels.items():
            print(
                f"| {name} | {proto} | {c} | {r['throughput']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} |"
            )
    ours = results["modeldeploy"]
    print()
    for other in (n for n in results if n != "modeldeploy"):
        for proto in PROTOCOLS:
            ratios = ", ".join(
                f"c={c}: {ours[proto, c]['throughput'] / results[other][proto, c]['throughput']:.2f}x"
                for c in LEVELS
            )
            print(f"modeldeploy {proto} throughput / {other} {proto}: {ratios}")
    print(
        f"in-process onnxruntime, batch 1: {floor:.2f} ms; modeldeploy REST p50 at c=1 is "
        f"{ours['REST', 1]['p50'] - floor:+.2f} ms over it, gRPC {ours['gRPC', 1]['p50'] - floor:+.2f} ms"
    )
    print("\nPNG (256x256 RGB) in, top-5 labels out, REST, modeldeploy:\n")
    print("| concurrency | throughput req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- |")
    for c, r in png_results.items():
        print(f"| {c} | {r['throughput']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    print(
        f"\nOverload, REST, {OVERLOAD_CLIENTS} closed-loop clients, queue bound {OVERLOAD_QUEUE}:\n"
    )
    print(
        "| refused clients | answered req/s | answered p99 ms | refused req/s (503) | refused p50 ms | refused p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for backoff, r in overload.items():
        how = f"wait Retry-After ({backoff:g} s)" if backoff else "retry at once"
        print(
            f"| {how} | {r['throughput']:.1f} | {r['p99']:.0f} | {r['refused'] / DURATION:.1f} "
            f"| {r['refused_p50']:.1f} | {r['refused_p99']:.1f} |"
        )
    print(f"\nReady after both: {ready_after}")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
