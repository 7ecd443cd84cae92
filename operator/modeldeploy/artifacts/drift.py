"""The reference profile an artifact carries, and the statistics that compare live data with it.

Staging builds the profile from representative data (``spec.monitoring.reference`` or the
calibration set) and stores it in the manifest; the runtime compares what it serves with it.
One module for both halves, so the two can never bin differently.

- **Inputs**: per input, and per channel of an image-like input (``[N, C, ...]`` with a few
  channels), a histogram of the values with quantile bin edges (each bin holds about the same
  share of the reference), and a histogram of each sample's channel mean.
- **Predictions**: on the reference, the share of each top-1 class and a histogram of the top
  score.

The statistics are the field's usual ones:

- **PSI**, the population stability index: ``sum((a - e) * ln(a / e))`` over the bins, with
  ``e`` the reference's share and ``a`` the live one (both floored at ``EPSILON``, so an empty
  bin counts without dividing by zero). Below 0.1 is usually read as no shift, 0.1-0.25 as
  moderate, above 0.25 as a significant one.
- **KS**, the Kolmogorov-Smirnov statistic between the reference's and the live cumulative
  distributions, taken at the reference's bin edges (the profile keeps bins, not values): the
  largest gap, from 0 to 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:  # numpy is imported where it is used: the manifest (and with it the operator,
    import numpy as np  # which never computes drift) imports this module for the models alone.

BINS = 10
"""Bins per histogram: deciles of the reference."""
MAX_BINS = 64
MAX_CHANNELS = 16
"""An input's second axis is treated as channels up to this size (images: 1, 3 or 4)."""
MAX_CLASSES = 4096
EPSILON = 1e-4
"""Floor of a bin's share in PSI: an empty bin weighs as a very rare one."""


class _Part(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Histogram(_Part):
    """Bin edges (``len(proportions) + 1``, increasing) and each bin's share of the reference.
    Values below the first edge count in the first bin, above the last in the last."""

    edges: Annotated[list[float], Field(min_length=2, max_length=MAX_BINS + 1)]
    proportions: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(max_length=MAX_BINS)]

    @model_validator(mode="after")
    def _consistent(self) -> Histogram:
        if len(self.edges) != len(self.proportions) + 1:
            raise ValueError(f"{len(self.edges)} edges for {len(self.proportions)} bins")
        if any(not math.isfinite(e) for e in self.edges):
            raise ValueError("bin edges must be finite")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("bin edges must increase")
        if abs(sum(self.proportions) - 1) > 1e-3:
            raise ValueError(f"bin shares sum to {sum(self.proportions):.4f}, not 1")
        return self

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each bin."""
        import numpy as np

        inner = np.asarray(self.edges[1:-1], dtype=np.float64)
        index = np.searchsorted(inner, values.reshape(-1).astype(np.float64), side="right")
        return np.bincount(index, minlength=len(self.proportions)).astype(np.float64)


class InputProfile(_Part):
    """One input: a histogram of its values per channel, and of each sample's channel mean."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    channels: Annotated[list[Histogram], Field(min_length=1, max_length=MAX_CHANNELS)]
    sample_means: Annotated[list[Histogram], Field(min_length=1, max_length=MAX_CHANNELS)]


class PredictionProfile(_Part):
    """On the reference: each class's share of the top-1 answers, and the top score."""

    classes: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=2,
                                                                        max_length=MAX_CLASSES)]  # fmt: skip
    top_score: Histogram


class ReferenceProfile(_Part):
    """What the model was staged on, in numbers: stored in the manifest as ``reference``."""

    source: Annotated[str, Field(max_length=4096)]
    """Where the data came from: the reference URI, or ``calibration``."""
    samples: Annotated[int, Field(ge=1)]
    inputs: Annotated[list[InputProfile], Field(min_length=1, max_length=64)]
    predictions: PredictionProfile | None = None


def histogram(values: np.ndarray, bins: int = BINS) -> Histogram:
    """Quantile bins of ``values``: each holds about ``1/bins`` of them. Repeated quantiles
    (discrete data, such as pixels) merge into one bin; a constant input gets one bin."""
    import numpy as np

    flat = values.reshape(-1).astype(np.float64)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        raise ValueError("no finite values to profile")
    edges = np.unique(np.quantile(flat, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # a constant: one bin around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    shares = (
        np.bincount(np.searchsorted(edges[1:-1], flat, side="right"), minlength=edges.size - 1)
        / flat.size
    )
    return Histogram(edges=edges.tolist(), proportions=shares.tolist())


def channels(array: np.ndarray) -> list[np.ndarray]:
    """``[N, C, ...]`` with a few channels: one array per channel; otherwise the whole."""

    if array.ndim >= 3 and 1 <= array.shape[1] <= MAX_CHANNELS:
        return [array[:, c] for c in range(array.shape[1])]
    return [array]


def profile_input(name: str, array: np.ndarray) -> InputProfile:
    """``array``: the reference's values of one input, batch first."""
    import numpy as np

    per_channel = channels(array.astype(np.float64))
    return InputProfile(
        name=name,
        channels=[histogram(c) for c in per_channel],
        sample_means=[histogram(c.reshape(len(c), -1).mean(axis=1)) for c in per_channel],
    )


def profile_predictions(scores: np.ndarray) -> PredictionProfile | None:
    """``scores``: ``[N, classes]`` answers on the reference; None for another shape."""
    import numpy as np

    if scores.ndim != 2 or not 2 <= scores.shape[1] <= MAX_CLASSES:
        return None
    top = scores.argmax(axis=1)
    shares = np.bincount(top, minlength=scores.shape[1]) / len(top)
    return PredictionProfile(classes=shares.tolist(), top_score=histogram(scores.max(axis=1)))


def psi(expected: Sequence[float], counts: np.ndarray) -> float:
    """The population stability index of live ``counts`` (per bin) against the reference's
    shares; NaN without live data."""
    import numpy as np

    total = float(counts.sum())
    if total == 0:
        return float("nan")
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPSILON)
    a = np.maximum(counts / total, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(expected: Sequence[float], counts: np.ndarray) -> float:
    """The Kolmogorov-Smirnov statistic between the reference's binned distribution and the
    live ``counts``, at the bin edges; NaN without live data."""
    import numpy as np

    total = float(counts.sum())
    if total == 0:
        return float("nan")
    reference = np.cumsum(np.asarray(expected, dtype=np.float64))
    live = np.cumsum(counts / total)
    return float(np.max(np.abs(reference - live)))
