"""``spec.monitoring``: what the model's drift is measured against (docs/monitoring.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modeldeploy.api.base import ApiModel, Duration, nested
from modeldeploy.api.model import MODEL_URI, no_dot_dot


class ReferenceData(ApiModel):
    """Representative inputs: what live traffic is compared with."""

    uri: Annotated[str, Field(pattern=MODEL_URI, max_length=2048)]
    """A .npz file of input arrays keyed by input name, batch first, in the values the server
    receives (for an image input: the decoded, resized pixels, before the spec's scaling); same
    schemes as the model uri."""

    samples: Annotated[int, Field(ge=16, le=100_000)] = 2000
    """How many samples from the file the profile is built from, at most."""

    cel_rules = (no_dot_dot("uri", "uri"),)


class MonitoringWindow(ApiModel):
    """The live traffic drift is measured on: the last ``requests`` requests, none older than
    ``duration``."""

    requests: Annotated[int, Field(ge=10, le=100_000)] = 1000
    """Requests in the window, at most."""

    duration: Duration = "10m"
    """The oldest request in the window, e.g. 10m or 1h."""


class MonitoringSpec(ApiModel):
    """Drift monitoring. Staging builds a reference profile from ``reference`` (or, without it,
    from the quantization's calibration data) into the artifact; the runtime measures live
    inputs and predictions against it. Without real data there is no profile, and no drift is
    measured: random parity samples are no reference."""

    reference: ReferenceData | None = None
    """Representative inputs; default: the calibration data, when the spec has some."""

    window: MonitoringWindow = nested(MonitoringWindow)
    """The live traffic the runtime compares with the reference."""

    min_requests: Annotated[int, Field(ge=1, le=100_000)] = 100
    """Fewest requests the window must hold before drift is judged (at most ``window.requests``
    are asked for): a PSI over a handful of requests is noise. Until then the Drifting condition
    keeps its last verdict and ``status.monitoring`` says how many requests there are."""

    psi_threshold: Annotated[float, Field(gt=0, le=10)] = 0.25
    """The Drifting condition turns True when an input's or the predictions' PSI is above this
    (0.25: the field's usual "significant shift")."""
