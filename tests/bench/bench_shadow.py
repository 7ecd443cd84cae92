"""What a shadow costs stable: ResNet-18 over REST at concurrency 8, one ``modeldeploy serve``
process measured with its shadow file off and on (20% mirrored), in alternating rounds, without
a restart between them (the file is rewritten as the kubelet refreshes a ConfigMap volume).

Two candidates, both real runtime processes serving a staged artifact over a real socket:

- **cheap**: a graph with ResNet-18's signature ([3,224,224] in, [1000] out) that averages each
  channel and applies one linear layer. It stands in for a candidate on another node: it takes
  almost none of this machine's two cores, so what is left is stable's own cost of sampling,
  encoding, sending, parsing and comparing (the figure the target is about: at most 5%).
- **full**: the same ResNet-18 artifact in a second process on the same two cores. Its inference
  competes with stable's for the CPU, so this figure measures the machine as much as the shadow,
  and is reported, not targeted.

The figure per configuration is the median over the rounds; the ratio is against the rounds
with the shadow off.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.api import mirror
from modeldeploy.api.validation import parse
from modeldeploy.staging.stage import stage
from tests.bench.bench_runtime import drive, process, rest_call, serve, stage_resnet
from tests.staging import models

CONCURRENCY = 8
PERCENT = 20
ROUNDS = int(os.environ.get("BENCH_SHADOW_ROUNDS", "3"))


def stage_cheap(root: Path) -> Path:
    """A real artifact with ResNet-18's name and signature and almost no compute."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 1000)).eval()
    source = models.save(module, root / "cheap.pt")
    spec = parse({
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "resnet18"},
        "spec": {"model": {"uri": f"file://{source}", "format": "pytorch",
                           "inputs": [{"name": "image", "shape": [3, 224, 224]}]},
                 "optimization": {"parity": {"samples": 4}},
                 "serving": {"batching": {"maxBatchSize": 32, "maxQueueDelay": "2ms"}}},
    })  # fmt: skip
    return Path(stage(spec, str(root / "store-cheap")).uri.removeprefix("file://"))


def write(path: Path, config: dict[str, Any] | None) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config or {}))
    os.replace(temporary, path)
    time.sleep(1.2)  # the runtime looks at the file once a second at most


def shadow_counts(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modeldeploy_shadow_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = f"{sample.labels['candidate']} {sample.labels['outcome']}"
                    counts[key] = counts.get(key, 0) + sample.value
    return counts


def main() -> None:
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        artifact = stage_resnet(root, "resnet18")
        cheap = stage_cheap(root)
        shadow_file = root / mirror.FILE
        write(shadow_file, None)
        stable = serve(artifact, "--shadow-config", str(shadow_file), "--revision", "stable")
        candidates = {"cheap": serve(cheap), "full": serve(artifact)}
        configs: dict[str, dict[str, Any] | None] = {"off": None}
        for name, server in candidates.items():
            configs[f"on, {name} candidate"] = {
                "source": "stable", "candidate": name, "url": f"http://127.0.0.1:{server.http}",
                "percent": PERCENT, "atol": 1e-3, "rtol": 1e-3,
            }  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        with contextlib.ExitStack() as stack:
            stack.enter_context(process(stable, "resnet18", root / "stable.log"))
            for name, server in candidates.items():
                stack.enter_context(process(server, "resnet18", root / f"{name}.log"))
            for _ in range(ROUNDS):
                for name, config in configs.items():
                    write(shadow_file, config)
                    results[name].append(
                        drive(
                            lambda: rest_call(stable.http, "resnet18", "image", x, "FP32"),
                            CONCURRENCY,
                        )
                    )
            write(shadow_file, None)
            counts = shadow_counts(stable.http)
    off = statistics.median(r["throughput"] for r in results["off"])
    print(
        f"ResNet-18 224x224 FP32 over REST, concurrency {CONCURRENCY}, {PERCENT}% mirrored, CPU "
        f"({os.cpu_count()} cores shared by stable, the candidate and the load generator), "
        f"{ROUNDS} alternating rounds\n"
    )
    print("| stable's shadow | throughput req/s, each round | median | vs off | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rounds in results.items():
        each = ", ".join(f"{r['throughput']:.1f}" for r in rounds)
        median = statistics.median(r["throughput"] for r in rounds)
        p50 = statistics.median(r["p50"] for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        print(f"| {name} | {each} | {median:.1f} | {median / off - 1:+.1%} | {p50:.1f} | "
              f"{p99:.1f} |")  # fmt: skip
    print("\nmirrored requests by candidate and outcome: " + ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(counts.items()) if v))  # fmt: skip
    cheap_median = statistics.median(r["throughput"] for r in results["on, cheap candidate"])
    print(f"stable's throughput with 20% mirrored to the cheap candidate against none: "
          f"{cheap_median / off - 1:+.1%} (target: no worse than -5%)")  # fmt: skip


if __name__ == "__main__":
    main()
