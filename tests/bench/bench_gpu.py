"""``make bench-gpu``: staged artifacts on ONNX Runtime's CUDA execution provider.

Runs on the lent GPU machine against a bundle from ``gpu_bundle`` (carried by
``gpu_transfer``), and here on the CPU execution provider as a dry run, so that the device run
cannot fail on a bug. It needs only numpy, onnxruntime(-gpu) and torch, plus three modules of
ours that need nothing more: the artifact reader, the execution-provider choice and the dynamic
batcher (``operator/`` on ``PYTHONPATH``).

It measures, for each staged model and precision:

- **parity**: the execution provider's answers to the artifact's golden inputs against its
  golden outputs, within the atol/rtol that staging stored (a failure on CUDA means that graph
  is not safe on GPUs);
- **latency and throughput** at each batch size, ONNX Runtime against torch eager on the same
  weights (FP32, and FP16 under autocast). Every call starts and ends in host memory, as a
  served request does: the copies to and from the device are part of the figure;
- **dynamic batching**: ``runtime/batcher.py`` in-process, with 1, 8 and 32 concurrent callers of
  one sample each, against no batching (``maxBatchSize: 1``), both on the runtime's own single
  worker thread;
- **the runtime's provider choice** on this machine (``runtime/hardware.py``), and whether the
  TensorRT execution provider loads.

Writes ``gpu-bench.md`` and ``gpu-bench.json`` under ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before onnxruntime: it loads the CUDA libraries the GPU build also needs

import onnxruntime as ort  # isort: skip
from modeldeploy.artifacts.golden import excess as beyond_tolerance
from modeldeploy.artifacts.golden import golden_arrays
from modeldeploy.runtime import hardware
from modeldeploy.runtime.batcher import DynamicBatcher
from tests.bench import gpu_models
from tests.bench.timing import timed as _timed

PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
TENSORRT = "TensorrtExecutionProvider"


@dataclass
class Row:
    model: str
    precision: str
    batch: int
    ort_ms: float
    eager_fp32_ms: float
    eager_fp16_ms: float

    def per_second(self, ms: float) -> float:
        return self.batch * 1000 / ms


@dataclass
class Parity:
    model: str
    precision: str
    provider: str
    samples: int
    max_abs_diff: float
    atol: float
    rtol: float
    passed: bool
    worst_excess: float  # max(|a-b| - (atol + rtol*|b|)); > 0 fails


@dataclass
class Batching:
    model: str
    precision: str
    concurrency: int
    batched_rps: float
    batched_p50_ms: float
    unbatched_rps: float
    unbatched_p50_ms: float
    mean_batch: float


@dataclass
class Report:
    environment: dict[str, Any]
    parity: list[Parity] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    batching: list[Batching] = field(default_factory=list)


def timed(run: Callable[[], Any], seconds: float, sync: Callable[[], None]) -> float:
    return _timed(run, seconds, sync, warmup=3, most=500)


def environment(provider: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "ort_device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "provider": provider,
        "runtime_choice": hardware.execution_providers(
            ort.get_available_providers(), hardware.gpu_visible()
        ),
        "gpu_visible": hardware.gpu_visible(),
    }
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            env["driver"] = f"unknown ({err})"
    return env


def session(path: Path, provider: str) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    chosen = [provider] if provider == PROVIDERS["cpu"] else [provider, PROVIDERS["cpu"]]
    s = ort.InferenceSession(str(path), options, providers=chosen)
    if s.get_providers()[0] != provider:
        raise RuntimeError(f"{path}: ONNX Runtime fell back to {s.get_providers()} from {provider}")
    return s


def tensorrt_loads(path: Path) -> str:
    """Whether ONNX Runtime can run this graph on TensorRT here, and if not, why."""
    if TENSORRT not in ort.get_available_providers():
        return f"not in this onnxruntime build ({ort.get_device()}, {ort.__version__})"
    try:
        s = ort.InferenceSession(str(path), providers=[TENSORRT, PROVIDERS["cpu"]])
    except Exception as err:  # the provider library or TensorRT itself failed to load
        return f"failed to load: {str(err).splitlines()[0][:200]}"
    if s.get_providers()[0] != TENSORRT:
        return f"built in, but fell back to {s.get_providers()[0]} (TensorRT libraries not found)"
    return "loads"


@dataclass(frozen=True)
class Staged:
    """A staged artifact as this machine reads it: json and numpy only (no pydantic here)."""

    directory: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: Path) -> Staged:
        found = [root / "modeldeploy.json"] if (root / "modeldeploy.json").exists() else []
        (manifest,) = found or list(root.glob("*/modeldeploy.json"))
        return cls(manifest.parent, json.loads(manifest.read_text()))

    @property
    def model_path(self) -> Path:
        return self.directory / self.manifest["model"]["file"]

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float, float]:
        spec = self.manifest["golden"]
        inputs, outputs = golden_arrays(self.directory / spec["file"])
        return inputs, outputs, float(spec["atol"]), float(spec["rtol"])


def check_parity(name: str, precision: str, artifact: Staged, s: Any, provider: str) -> Parity:
    inputs, outputs, atol, rtol = artifact.golden()
    got = s.run(list(outputs), inputs)
    diffs, excess = [], []
    for want, have in zip(outputs.values(), got, strict=True):
        a = np.asarray(have, dtype=np.float64)
        b = np.asarray(want, dtype=np.float64)
        diffs.append(float(np.max(np.abs(a - b))))
        excess.append(float(np.max(beyond_tolerance(a, b, atol, rtol))))
    worst = max(excess)
    return Parity(
        name,
        precision,
        provider,
        len(next(iter(inputs.values()))),
        max(diffs),
        atol,
        rtol,
        worst <= 0 and all(np.isfinite(diffs)),
        worst,
    )


def sample(spec: dict[str, Any], batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (batch, *spec["shape"])
    if spec["dtype"] == "int64":
        return rng.integers(0, spec["high"], size=shape, dtype=np.int64)
    return rng.uniform(0, spec["high"], size=shape).astype(np.float32)


def eager_model(bundle: Path, model: dict[str, Any], device: str) -> Callable[[Any], Any]:
    if model["arch"] == "resnet18":
        net: torch.nn.Module = gpu_models.ResNet18(**model["config"])
    else:
        net = gpu_models.TextEncoder(**model["config"])
    net.load_state_dict(torch.load(bundle / model["weights"], weights_only=True))
    net = net.eval().to(device)
    if model["arch"] == "resnet18":
        return lambda x: net(gpu_models.normalise(x))
    return net  # type: ignore[no-any-return]


def time_eager(
    forward: Callable[[Any], Any], x: np.ndarray, device: str, fp16: bool, seconds: float
) -> float:
    def run() -> Any:
        with torch.inference_mode(), torch.autocast(device, torch.float16, enabled=fp16):
            return forward(torch.from_numpy(x).to(device)).float().cpu()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return timed(run, seconds, sync)


async def drive(batcher: DynamicBatcher, x: np.ndarray, name: str, callers: int, seconds: float) -> tuple[float, float]:  # fmt: skip
    """Closed-loop callers of one sample each: requests per second and p50 ms."""
    latencies: list[float] = []
    warm_until = time.monotonic() + min(1.0, seconds / 2)
    stop = warm_until + seconds

    async def caller() -> None:
        while (now := time.monotonic()) < stop:
            await batcher.infer({name: x})
            if now >= warm_until:
                latencies.append(time.monotonic() - now)

    await asyncio.gather(*(caller() for _ in range(callers)))
    latencies.sort()
    return len(latencies) / seconds, 1000 * latencies[len(latencies) // 2]


def measure_batching(
    model: dict[str, Any], precision: str, s: Any, levels: list[int], max_batch: int, seconds: float
) -> list[Batching]:
    name = model["input"]["name"]
    x = sample(model["input"], 1, seed=7)
    rows = []
    for c in levels:
        results = {}
        sizes: list[int] = []
        for batched in (True, False):
            # the runtime's arrangement: one worker thread, the batcher in front of it
            with ThreadPoolExecutor(max_workers=1) as executor:
                batcher = DynamicBatcher(
                    lambda inputs: s.run(None, inputs),
                    max_batch if batched else 1,
                    0.002,
                    executor,
                    (lambda rows, waits, sizes=sizes: sizes.append(rows)) if batched else None,
                )
                results[batched] = asyncio.run(drive(batcher, x, name, c, seconds))
        rows.append(
            Batching(
                model["label"],
                precision,
                c,
                *results[True],
                *results[False],
                statistics.fmean(sizes) if sizes else 0.0,
            )
        )
    return rows


def run(args: argparse.Namespace) -> Report:
    bundle = Path(args.bundle)
    index = json.loads((bundle / "bundle.json").read_text())
    if args.provider == "auto":
        args.provider = "cuda" if PROVIDERS["cuda"] in ort.get_available_providers() else "cpu"
    provider = PROVIDERS[args.provider]
    device = "cuda" if args.provider == "cuda" else "cpu"
    preload = "not needed"
    if device == "cuda" and hasattr(ort, "preload_dlls"):
        try:  # the CUDA and cuDNN libraries of the pip packages torch uses
            ort.preload_dlls()
            preload = "ok"
        except Exception as err:  # reported; session creation then says what is missing
            preload = f"failed: {err}"
    report = Report(environment(provider))
    report.environment["preload_dlls"] = preload
    # First, so that a failure further on still leaves what this machine offers in the log.
    print(json.dumps(report.environment, default=str), flush=True)
    first = index["models"][0]
    report.environment["tensorrt"] = tensorrt_loads(
        Staged.open(bundle / first["artifacts"]["fp32"]).model_path
    )
    for model in index["models"]:
        forward = eager_model(bundle, model, device)
        eager: dict[tuple[int, bool], float] = {}
        for precision, folder in model["artifacts"].items():
            artifact = Staged.open(bundle / folder)
            s = session(artifact.model_path, provider)
            report.parity.append(check_parity(model["label"], precision, artifact, s, provider))
            for b in args.batches:
                x = sample(model["input"], b, seed=b)
                for fp16 in (False, True):
                    if (b, fp16) not in eager:
                        eager[b, fp16] = time_eager(forward, x, device, fp16, args.seconds)
                feed = {model["input"]["name"]: x}
                ort_ms = timed(lambda s=s, feed=feed: s.run(None, feed), args.seconds, lambda: None)
                report.rows.append(
                    Row(model["label"], precision, b, ort_ms, eager[b, False], eager[b, True])
                )
            if precision == args.batching_precision and model is first:
                report.batching = measure_batching(
                    model, precision, s, args.concurrency, args.max_batch, args.seconds
                )
        del forward
        if device == "cuda":
            torch.cuda.empty_cache()
    return report


def ratio(rows: list[Row], model: str, batch: int, num: str, den: str) -> float | None:
    """Throughput ratio of two measurements at one batch size ("ort:fp16" / "eager:fp32")."""

    def ms(what: str) -> float | None:
        kind, precision = what.split(":")
        for r in rows:
            if r.model == model and r.batch == batch:
                if kind == "eager":
                    return r.eager_fp16_ms if precision == "fp16" else r.eager_fp32_ms
                if r.precision == precision:
                    return r.ort_ms
        return None

    a, b = ms(num), ms(den)
    return None if a is None or b is None else b / a


def markdown(report: Report, target_batch: int) -> str:
    env = report.environment
    lines = [
        f"Device: {env.get('device', 'none (CPU dry run)')}; driver {env.get('driver', '-')}; "
        f"CUDA {env.get('cuda', '-')}; cuDNN {env.get('cudnn', '-')}; torch {env['torch']}; "
        f"onnxruntime {env['onnxruntime']} ({env['ort_device']}); Python {env['python']}; "
        f"{env['cores']} CPU cores.",
        f"Measured on {env['provider']}. Providers in this build: {', '.join(env['available_providers'])}.",
        f"runtime/hardware.py chooses: {' > '.join(env['runtime_choice'])} (GPU visible: {env['gpu_visible']}).",
        f"TensorRT execution provider: {env['tensorrt']}.",
        "",
        "### Parity: golden inputs on this provider against the artifact's golden outputs",
        "",
        "| model | precision | samples | max abs diff | atol | rtol | within tolerance |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in report.parity:
        verdict = "yes" if p.passed else f"**NO** (exceeds by {p.worst_excess:.3g})"
        lines.append(
            f"| {p.model} | {p.precision} | {p.samples} | {p.max_abs_diff:.3g} | {p.atol:g} | {p.rtol:g} | {verdict} |"
        )
    lines += [
        "",
        "### Latency and throughput, host memory in and out (ms per call; samples/s)",
        "",
        "| model | ORT precision | batch | ORT ms | ORT samples/s | eager FP32 ms | eager FP16 (autocast) ms | ORT / eager FP32 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.model} | {r.precision} | {r.batch} | {r.ort_ms:.2f} | {r.per_second(r.ort_ms):.0f} | "
            f"{r.eager_fp32_ms:.2f} | {r.eager_fp16_ms:.2f} | {r.eager_fp32_ms / r.ort_ms:.2f}x |"
        )
    if report.batching:
        lines += [
            "",
            "### Dynamic batching (runtime/batcher.py, one sample per caller, one worker thread)",
            "",
            "| model | precision | callers | batched req/s | batched p50 ms | mean batch | unbatched req/s | unbatched p50 ms | batched / unbatched |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for b in report.batching:
            lines.append(
                f"| {b.model} | {b.precision} | {b.concurrency} | {b.batched_rps:.0f} | {b.batched_p50_ms:.2f} | "
                f"{b.mean_batch:.1f} | {b.unbatched_rps:.0f} | {b.unbatched_p50_ms:.2f} | {b.batched_rps / b.unbatched_rps:.2f}x |"
            )
    lines += ["", f"### Targets (issue 23; batch {target_batch})", ""]
    resnet = report.rows[0].model if report.rows else ""
    checks = [
        ("ORT FP16 / ORT FP32 throughput", ratio(report.rows, resnet, target_batch, "ort:fp16", "ort:fp32"), 1.8),
        ("ORT FP16 / torch eager FP32 throughput", ratio(report.rows, resnet, target_batch, "ort:fp16", "eager:fp32"), 2.0),
    ]  # fmt: skip
    top = max(report.batching, key=lambda b: b.concurrency, default=None)
    if top:
        checks.append(
            (
                f"batched / unbatched at c={top.concurrency}",
                top.batched_rps / top.unbatched_rps,
                5.0,
            )
        )
    for what, value, target in checks:
        got = "not measured" if value is None else f"{value:.2f}x"
        met = "" if value is None else (" (met)" if value >= target else " (**not met**)")
        lines.append(f"- {resnet}: {what}: {got}, target ≥ {target}x{met}")
    failed = [f"{p.model} {p.precision}" for p in report.parity if not p.passed]
    lines.append(
        "- parity within every artifact's tolerance: "
        + ("yes" if not failed else f"**no**: {', '.join(failed)}")
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_gpu")
    parser.add_argument("--bundle", required=True, help="the unpacked bundle folder")
    parser.add_argument("--out", required=True, help="where gpu-bench.md/.json are written")
    parser.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8, 32, 64])  # fmt: skip
    parser.add_argument("--concurrency", type=lambda s: [int(v) for v in s.split(",")], default=[1, 8, 32])  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=32, help="the batcher's maxBatchSize")
    parser.add_argument("--batching-precision", default="fp16")
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    parser.add_argument("--target-batch", type=int, default=32)
    args = parser.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report, args.target_batch)
    (out / "gpu-bench.md").write_text(text)
    (out / "gpu-bench.json").write_text(json.dumps(asdict(report), indent=1, default=str))
    print(text)
    return 0 if all(p.passed for p in report.parity) else 3


if __name__ == "__main__":
    raise SystemExit(main())
