"""What drift monitoring costs the runtime: ResNet-18 over REST at concurrency 32, the same
artifact served with its reference profile (drift on) and without it (drift off), side by side.

The two servers run at once and are measured in alternating rounds, so a slow moment on this
shared machine hits both alike; the figure is the median of the rounds' throughput ratios. The
reference is 256 random images: the cost does not depend on what the data is, only on its shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from tests.bench.bench_runtime import drive, process, rest_call, serve, stage_resnet

CONCURRENCY = 32
ROUNDS = int(os.environ.get("BENCH_DRIFT_ROUNDS", "3"))


def without_reference(artifact: Path, into: Path) -> Path:
    """A copy of ``artifact`` whose manifest has no reference profile: drift off."""
    copy = into / "no-reference"
    shutil.copytree(artifact, copy)
    manifest_path = copy / "resnet18" / "modeldeploy.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("reference", None)
    manifest_path.write_text(json.dumps(manifest))
    return copy


def main() -> None:
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = root / "reference.npz"
        rng = np.random.default_rng(1)
        np.savez(reference, image=rng.uniform(0, 1, (256, 3, 224, 224)).astype(np.float32))
        on = stage_resnet(root, "resnet18", reference=reference)
        manifest = json.loads((on / "resnet18" / "modeldeploy.json").read_text())
        assert manifest.get("reference"), "staging built no reference profile"
        off = without_reference(on, root)
        servers = {"drift on": serve(on), "drift off": serve(off)}
        rounds: dict[str, list[float]] = {name: [] for name in servers}
        with contextlib.ExitStack() as stack:
            for name, server in servers.items():
                stack.enter_context(process(server, "resnet18", root / f"{name}.log"))
            for _ in range(ROUNDS):
                for name, server in servers.items():
                    result = drive(
                        lambda port=server.http: rest_call(port, "resnet18", "image", x, "FP32"),
                        CONCURRENCY,
                    )
                    rounds[name].append(result["throughput"])
    ratios = [a / b for a, b in zip(rounds["drift on"], rounds["drift off"], strict=True)]
    print(
        f"ResNet-18 224x224 FP32 over REST, concurrency {CONCURRENCY}, CPU ({os.cpu_count()} "
        f"cores shared with the load generator), {ROUNDS} alternating rounds\n"
    )
    print("| server | throughput req/s, each round | median |")
    print("| --- | --- | --- |")
    for name, values in rounds.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {each} | {statistics.median(values):.1f} |")
    loss = 1 - statistics.median(ratios)
    print(f"\nthroughput with drift on / off: median ratio {statistics.median(ratios):.3f} "
          f"({loss:+.1%} lost; target at most 3%)")  # fmt: skip


if __name__ == "__main__":
    main()
