"""A probe of Python's cyclic garbage collector, for the operator benchmark (docs/benchmarks.md).

Put this folder on the operator's ``PYTHONPATH``::

    BENCH_OPERATOR_ENV="PYTHONPATH=$PWD/tests/bench/gcprobe" .venv/bin/python -m tests.bench.bench_operator

At exit the operator writes ``gcprobe-<pid>.json`` into ``GCPROBE_DIR`` (default ``/tmp``): the
number of collections and the CPU seconds spent in each generation. With ``GCPROBE_SAVEALL=1``
(``BENCH_OPERATOR_ENV="PYTHONPATH=... GCPROBE_SAVEALL=1"``) every object the collector found
unreachable is kept instead of freed (memory grows: use a smaller ``BENCH_SCALE_N``), and the
file also tallies them by type: what makes the garbage that only the collector frees.
"""

from __future__ import annotations

import atexit
import collections
import gc
import json
import os
import time
from typing import Any

_stats = {generation: [0, 0.0] for generation in range(3)}
_started = [0.0]
SAVEALL = os.environ.get("GCPROBE_SAVEALL") == "1"


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.process_time()
        return
    entry = _stats[info["generation"]]
    entry[0] += 1
    entry[1] += time.process_time() - _started[0]


def _report() -> None:
    out: dict[str, Any] = {
        "cpu_seconds": round(time.process_time(), 3),
        "threshold": gc.get_threshold(),
        "generations": {g: {"count": c, "seconds": round(s, 3)} for g, (c, s) in _stats.items()},
    }
    if SAVEALL:
        gc.collect()
        kinds = collections.Counter(
            f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
        )
        out["unreachable"] = {"objects": len(gc.garbage), "by_type": kinds.most_common(30)}
    folder = os.environ.get("GCPROBE_DIR", "/tmp")
    with open(os.path.join(folder, f"gcprobe-{os.getpid()}.json"), "w") as f:
        json.dump(out, f, indent=1)


gc.callbacks.append(_timed)
if SAVEALL:
    gc.set_debug(gc.DEBUG_SAVEALL)
atexit.register(_report)
