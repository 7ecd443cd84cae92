"""One way to time a call for the benchmarks: standard library only, as the GPU machine has
nothing of ours but the repository."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(
    run: Callable[[], Any],
    seconds: float,
    sync: Callable[[], None] = lambda: None,
    warmup: int = 1,
    most: int = 200,
) -> float:
    """Median milliseconds per call after ``warmup`` calls; at least 5 calls, then as many as
    ``seconds`` allows, up to ``most``. ``sync`` waits for asynchronous work (a GPU's) before the
    clock is read."""
    for _ in range(warmup):
        run()
    sync()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < most):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
