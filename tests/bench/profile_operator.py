"""Where the operator's CPU goes during ``bench_operator``: the benchmark runs as usual while
``py-spy record --gil`` samples the operator process, then the samples are summed into
inclusive shares of a few named parts (docs/benchmarks.md quotes them).

    .venv/bin/pip install py-spy
    .venv/bin/python -m tests.bench.profile_operator [raw output path]

The benchmark's own environment variables (``BENCH_SCALE_N``, ``BENCH_DEPLOYMENT_MODE``, ...)
apply. Figures only; nothing here asserts anything.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

PARTS = {
    "the operator's requests (api_transport)": "api_transport.py",
    "aiohttp": "aiohttp/",
    "the watches (informer)": "modeldeploy/controller/informer.py",
    "orjson decoding watch events": "watch_decoding.py",
    "the event filters (handlers)": "modeldeploy/controller/handlers.py",
    "the work queue's looks": "modeldeploy/controller/work_queue.py",
    "engine.observe": "observe (modeldeploy/controller/engine.py",
    "reconcile.plan": "plan (modeldeploy/controller/reconcile.py",
    "pydantic": "pydantic",
    "staging hash": "staging_hash",
    "logging": "logging/",
}


def shares(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Samples in all, and per part (inclusive) and per innermost frame."""
    total, parts, leaves = 0, Counter[str](), Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        for part, marker in PARTS.items():
            if marker in stack:
                parts[part] += n
        leaves[stack.split(";")[-1]] += n
    return total, parts, leaves


def main() -> None:
    raw = Path(sys.argv[1] if len(sys.argv) > 1 else "operator-profile.raw")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    bench = subprocess.Popen([sys.executable, "-m", "tests.bench.bench_operator"])
    pid = ""
    for _ in range(240):
        found = subprocess.run(["pgrep", "-f", "modeldeploy operator"],
                               capture_output=True, text=True, check=False)  # fmt: skip
        pid = found.stdout.split()[0] if found.stdout.split() else ""
        if pid:
            break
        time.sleep(0.5)
    if not pid:
        bench.kill()
        sys.exit("the operator never started")
    recorder = subprocess.Popen([spy, "record", "--gil", "-r", "50", "-f", "raw",
                                 "-o", str(raw), "-p", pid])  # fmt: skip
    bench.wait()
    recorder.wait(timeout=60)
    total, parts, leaves = shares(raw)
    print(f"\n{total} samples of the operator holding the GIL; inclusive shares:")
    for part, n in parts.most_common():
        print(f"{n / total * 100:5.1f}%  {part}")
    print("innermost frames:")
    for frame, n in leaves.most_common(12):
        print(f"{n / total * 100:5.1f}%  {frame[:110]}")


if __name__ == "__main__":
    main()
