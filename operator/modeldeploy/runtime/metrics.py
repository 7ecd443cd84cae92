"""Prometheus metrics of the runtime, served on the kserve ``/metrics`` endpoint.

Besides traffic, latency and batching, the runtime keeps simple statistics of what clients send,
per input, over a sliding window of requests, so a drift alert can compare them with the
training data without logging any payload.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "modeldeploy_requests", "Inference requests by model and outcome.", ["model", "outcome"]
)
LATENCY = Histogram(
    "modeldeploy_request_latency_seconds",
    "Time from request decoded to response built, queueing included.",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "modeldeploy_batch_size",
    "Rows per ONNX Runtime call after dynamic batching.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
QUEUE_WAIT = Histogram(
    "modeldeploy_queue_wait_seconds",
    "Time a request waited in the batching queue.",
    ["model"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
)
SELF_TEST = Gauge(
    "modeldeploy_self_test_passed", "1 when the start-up self-test passed, else 0.", ["model"]
)
SELF_TEST_ERROR = Gauge(
    "modeldeploy_self_test_max_abs_diff",
    "Largest difference between served and stored golden outputs at start-up.",
    ["model"],
)
INPUT_STAT = Gauge(
    "modeldeploy_input_statistic",
    "Statistic of an input's values over the last requests (window), for drift alerts.",
    ["model", "input", "statistic"],
)


class InputStatistics:
    """Mean, std, min and max of each input over the last ``window`` requests."""

    def __init__(self, model: str, window: int = 1000) -> None:
        self.model = model
        self._window: dict[str, deque[tuple[float, float, float, float, int]]] = {}
        self._size = window
        self._lock = threading.Lock()

    SAMPLE = 4096
    """Values looked at per request: an even stride through the tensor, so a large image costs
    the same as a small one."""

    def observe(self, name: str, values: np.ndarray) -> None:
        if values.dtype.kind not in "biuf" or values.size == 0:
            return
        flat = values.reshape(-1)
        v = flat[:: max(1, flat.size // self.SAMPLE)].astype(np.float64)
        entry = (float(v.sum()), float(np.square(v).sum()), float(v.min()), float(v.max()), v.size)
        with self._lock:
            window = self._window.setdefault(name, deque(maxlen=self._size))
            window.append(entry)
            total = sum(e[0] for e in window)
            squares = sum(e[1] for e in window)
            count = sum(e[4] for e in window)
            low = min(e[2] for e in window)
            high = max(e[3] for e in window)
        mean = total / count
        std = max(0.0, squares / count - mean * mean) ** 0.5
        for statistic, value in (("mean", mean), ("std", std), ("min", low), ("max", high)):
            INPUT_STAT.labels(self.model, name, statistic).set(value)
