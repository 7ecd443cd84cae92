"""Drift of what the runtime serves against the reference profile its artifact carries.

Per request, only a bounded sample is kept: up to ``SAMPLE`` values per input channel, each
sample's channel means, and the top-1 class and score of each answer. The statistics (PSI and KS,
``modeldeploy.artifacts.drift``) are computed over the window when Prometheus scrapes, not per
request, so the request path pays for a strided copy and an append. The window is the last
``window`` requests, and no older than ``seconds``.

Exported only when the artifact has a reference profile (docs/metrics.md):
``modeldeploy_drift_psi`` and ``modeldeploy_drift_ks`` per input and channel (and
``modeldeploy_drift_mean_psi`` over the per-sample channel means),
``modeldeploy_prediction_drift_psi`` over the top-1 classes, ``modeldeploy_prediction_drift_ks``
over the top score, and
``modeldeploy_drift_window_requests``, how many requests the numbers stand on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from modeldeploy.artifacts.drift import ReferenceProfile, channels, ks, psi
from modeldeploy.runtime import metrics

SAMPLE = 1024
"""Values kept per input channel per request: an even stride through the tensor."""


@dataclass(frozen=True)
class DriftWindow:
    """Overrides of how much recent traffic the drift statistics cover: the last ``requests``
    requests, none older than ``seconds``; None keeps the manifest's (the spec's window)."""

    requests: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class _Seen:
    """One request, as much of it as drift needs."""

    at: float
    values: dict[tuple[str, int], np.ndarray]
    means: dict[tuple[str, int], np.ndarray]
    top_classes: np.ndarray | None
    top_scores: np.ndarray | None


class DriftMonitor:
    """The window of served requests, and the gauges computed from it at each scrape."""

    def __init__(
        self,
        model: str,
        profile: ReferenceProfile,
        window: int = 1000,
        seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.profile = profile
        self.seconds = seconds
        self.clock = clock
        self._seen: deque[_Seen] = deque(maxlen=window)
        self._lock = threading.Lock()
        for item in profile.inputs:
            for channel in range(len(item.channels)):
                labels = (model, item.name, str(channel))
                metrics.DRIFT_PSI.labels(*labels).set_function(
                    partial(self.input_statistic, item.name, channel, psi)
                )
                metrics.DRIFT_KS.labels(*labels).set_function(
                    partial(self.input_statistic, item.name, channel, ks)
                )
                metrics.DRIFT_MEAN_PSI.labels(*labels).set_function(
                    partial(self.mean_psi, item.name, channel)
                )
        if profile.predictions is not None:
            metrics.PREDICTION_DRIFT_PSI.labels(model).set_function(self.prediction_psi)
            metrics.PREDICTION_DRIFT_KS.labels(model).set_function(self.score_ks)
        metrics.DRIFT_WINDOW.labels(model).set_function(lambda: float(len(self._window())))

    def observe(self, inputs: dict[str, np.ndarray], scores: np.ndarray | None) -> None:
        """Keep a bounded sample of one served request: its inputs and its first output."""
        values: dict[tuple[str, int], np.ndarray] = {}
        means: dict[tuple[str, int], np.ndarray] = {}
        for item in self.profile.inputs:
            array = inputs.get(item.name)
            if array is None or array.dtype.kind not in "biuf" or array.size == 0:
                continue
            per_channel = channels(array)
            if len(per_channel) != len(item.channels):
                continue  # a shape the profile does not describe: not compared
            for channel, part in enumerate(per_channel):
                flat = part.reshape(-1)
                values[item.name, channel] = flat[:: max(1, flat.size // SAMPLE)].astype(np.float32)
                means[item.name, channel] = part.reshape(len(part), -1).mean(axis=1)
        predictions = self.profile.predictions
        top = top_scores = None
        if (
            predictions is not None
            and scores is not None
            and scores.ndim == 2
            and scores.shape[1] == len(predictions.classes)
        ):
            top, top_scores = scores.argmax(axis=1), scores.max(axis=1).astype(np.float32)
        seen = _Seen(self.clock(), values, means, top, top_scores)
        with self._lock:
            self._seen.append(seen)

    def _window(self) -> list[_Seen]:
        oldest = self.clock() - self.seconds
        with self._lock:
            while self._seen and self._seen[0].at < oldest:
                self._seen.popleft()
            return list(self._seen)

    def _live(self, pick: Callable[[_Seen], np.ndarray | None]) -> np.ndarray | None:
        """What ``pick`` takes from each request in the window, joined; None without any."""
        live = [found for seen in self._window() if (found := pick(seen)) is not None]
        return np.concatenate(live) if live else None

    def input_statistic(self, name: str, channel: int, statistic: Callable[..., float]) -> float:
        """PSI or KS of one input channel's values over the window; NaN without data."""
        reference = next(i for i in self.profile.inputs if i.name == name).channels[channel]
        live = self._live(lambda seen: seen.values.get((name, channel)))
        return float("nan") if live is None else statistic(reference.proportions,
                                                           reference.counts(live))  # fmt: skip

    def mean_psi(self, name: str, channel: int) -> float:
        """PSI of the requests' per-sample channel means (a shift of the whole image, such as
        brightness or inversion) over the window; NaN without data."""
        reference = next(i for i in self.profile.inputs if i.name == name).sample_means[channel]
        live = self._live(lambda seen: seen.means.get((name, channel)))
        return float("nan") if live is None else psi(reference.proportions, reference.counts(live))

    def score_ks(self) -> float:
        """KS of the top scores over the window against the reference's; NaN without data."""
        assert self.profile.predictions is not None
        reference = self.profile.predictions.top_score
        live = self._live(lambda seen: seen.top_scores)
        return float("nan") if live is None else ks(reference.proportions, reference.counts(live))

    def prediction_psi(self) -> float:
        """PSI of the top-1 classes over the window against the reference's; NaN without data."""
        assert self.profile.predictions is not None
        classes = self.profile.predictions.classes
        live = self._live(lambda seen: seen.top_classes)
        if live is None:
            return float("nan")
        return psi(classes, np.bincount(live, minlength=len(classes)).astype(np.float64))
