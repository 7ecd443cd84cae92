"""Prometheus metrics of the runtime, served on the kserve ``/metrics`` endpoint.

Besides traffic, latency and batching, the runtime keeps simple statistics of what clients send,
per input, over a sliding window of requests, so a drift alert can compare them with the
training data without logging any payload.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from functools import partial

import numpy as np

from modeldeploy.api.metric_names import family

# Names, labels and help come from the catalogue (api/metric_names.py, docs/metrics.md).
REQUESTS = family("modeldeploy_requests").counter()
LATENCY = family("modeldeploy_request_latency_seconds").histogram(
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_ROWS = family("modeldeploy_batch_rows").histogram(
    (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)
QUEUE_WAIT = family("modeldeploy_queue_wait_seconds").histogram(
    (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
)
QUEUED = family("modeldeploy_queued_requests").gauge()
SELF_TEST = family("modeldeploy_self_test_passed").gauge()
SELF_TEST_ERROR = family("modeldeploy_self_test_max_abs_diff").gauge()
STATISTICS = ("mean", "std", "min", "max")
INPUT_STATISTICS = {s: family(f"modeldeploy_input_{s}").gauge() for s in STATISTICS}
"""One gauge per statistic: a mean and a max cannot be aggregated together."""
PREDICTIONS = family("modeldeploy_predictions").counter()
"""Answers by top-1 class, for classifiers (what the canary's maxPredictionPsi compares)."""
DRIFT_PSI = family("modeldeploy_drift_psi").gauge()
DRIFT_KS = family("modeldeploy_drift_ks").gauge()
DRIFT_MEAN_PSI = family("modeldeploy_drift_mean_psi").gauge()
PREDICTION_DRIFT_PSI = family("modeldeploy_prediction_drift_psi").gauge()
PREDICTION_DRIFT_KS = family("modeldeploy_prediction_drift_ks").gauge()
DRIFT_WINDOW = family("modeldeploy_drift_window_requests").gauge()
"""Drift against the artifact's reference profile (runtime/drift.py), when it has one."""
SHADOW_REQUESTS = family("modeldeploy_shadow_requests").counter()
SHADOW_ABS_DIFF = family("modeldeploy_shadow_abs_diff").histogram(
    (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 100),
)
SHADOW_MAX_ABS_DIFF = family("modeldeploy_shadow_max_abs_diff").gauge()
SHADOW_LATENCY = family("modeldeploy_shadow_latency_seconds").histogram(
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
"""The shadow mirror (runtime/shadow.py), once a shadow has named this pod's revision."""


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
        """Add one request's values; O(1) apart from the sample itself. The window is summed
        when Prometheus scrapes, not per request (per request, 1000 entries cost 20% of the
        event loop under load)."""
        if values.dtype.kind not in "biuf" or values.size == 0:
            return
        flat = values.reshape(-1)
        v = flat[:: max(1, flat.size // self.SAMPLE)].astype(np.float64)
        entry = (float(v.sum()), float(np.square(v).sum()), float(v.min()), float(v.max()), v.size)
        with self._lock:
            window = self._window.get(name)
            if window is None:
                window = self._window[name] = deque(maxlen=self._size)
                for statistic, gauge in INPUT_STATISTICS.items():
                    gauge.labels(self.model, name).set_function(
                        partial(self.statistic, name, statistic)
                    )
            window.append(entry)

    def statistic(self, name: str, statistic: str) -> float:
        """One statistic of ``name`` over the window, computed when it is read."""
        with self._lock:
            entries = list(self._window.get(name, ()))
        count = sum(e[4] for e in entries)
        if not count:
            return float("nan")
        mean = sum(e[0] for e in entries) / count
        values = {
            "mean": mean,
            "std": math.sqrt(max(0.0, sum(e[1] for e in entries) / count - mean * mean)),
            "min": min(e[2] for e in entries),
            "max": max(e[3] for e in entries),
        }
        return values[statistic]
