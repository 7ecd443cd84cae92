"""Steady client traffic for canary tests and benchmarks: tritonclient requests through an
InferenceService's URL (the router, as clients see it), counted by outcome."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import tritonclient.http as httpclient


class Load:
    """Requests in the digits model's shape ([1,1,8,8] FP32) every ``interval`` seconds: one
    random image again and again, or each of ``rows`` in turn (real, varied inputs). Every
    request's outcome is counted, and every answered one's latency kept."""

    def __init__(
        self,
        url: str,
        model: str = "digits",
        interval: float = 0.02,
        rows: np.ndarray | None = None,
    ) -> None:
        self.url, self.model, self.interval = url, model, interval
        self.rows = (
            rows
            if rows is not None
            else np.random.default_rng(0).random((1, 1, 1, 8, 8), dtype=np.float32)
        )
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        triton = httpclient.InferenceServerClient(self.url.removeprefix("http://"))
        items = []
        for row in self.rows:
            image = np.ascontiguousarray(row, dtype=np.float32).reshape(1, 1, 8, 8)
            item = httpclient.InferInput("image", [1, 1, 8, 8], "FP32")
            item.set_data_from_numpy(image, binary_data=True)
            items.append(item)
        sent = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                triton.infer(self.model, [items[sent % len(items)]])
                outcome = "ok"
                self.latencies.append(time.monotonic() - started)
            except Exception:
                outcome = "error"
            sent += 1
            self.outcomes[outcome] += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
