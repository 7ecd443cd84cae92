"""Drift as the operator reports it: ``status.monitoring`` and the ``Drifting`` condition.

Once per resync, three queries to the operator's Prometheus read every predictor's drift
gauges at once (``read_all``), grouped by namespace, deployment and revision; each
reconciliation then looks up its stable revision (``reading_for``) and ``report`` turns that into
the status and the condition. One read per resync period for all deployments, not one per
deployment. Numbers are rounded to 0.01, so the status is not rewritten at every scrape for
noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modeldeploy.api.modeldeployment import ModelDeploymentSpec
from modeldeploy.api.status import ConditionType, ModelDeploymentStatus, MonitoringStatus
from modeldeploy.controller.conditions import Wanted

if TYPE_CHECKING:
    from modeldeploy.controller.prometheus_client import PrometheusClient

Key = tuple[str, str, str]
"""(namespace, deployment, revision)."""

_BY = "namespace, modeldeploy_deployment, modeldeploy_revision"
INPUTS = f"max by ({_BY}, input, channel) (modeldeploy_drift_psi)"
PREDICTIONS = f"max by ({_BY}) (modeldeploy_prediction_drift_psi)"
WINDOW = f"sum by ({_BY}) (modeldeploy_drift_window_requests)"


@dataclass(frozen=True)
class DriftReading:
    """One revision's drift gauges, as Prometheus has them now."""

    inputs: dict[str, float] = field(default_factory=dict)
    """PSI per ``input/channel``."""
    prediction_psi: float | None = None
    window_requests: int = 0


def _key(labels: dict[str, str]) -> Key:
    return (
        labels.get("namespace", ""),
        labels.get("modeldeploy_deployment", ""),
        labels.get("modeldeploy_revision", ""),
    )


def read_all(prometheus: PrometheusClient, timeout: float) -> dict[Key, DriftReading]:
    """Every revision's drift, from three queries."""
    inputs: dict[Key, dict[str, float]] = {}
    for labels, value in prometheus.vector(INPUTS, timeout):
        where = f"{labels.get('input', '?')}/{labels.get('channel', '0')}"
        inputs.setdefault(_key(labels), {})[where] = value
    predictions = {_key(labels): value for labels, value in prometheus.vector(PREDICTIONS, timeout)}
    windows = {_key(labels): value for labels, value in prometheus.vector(WINDOW, timeout)}
    return {
        key: DriftReading(inputs.get(key, {}), predictions.get(key), int(windows.get(key, 0)))
        for key in {*inputs, *predictions, *windows}
    }


def reading_for(
    readings: dict[Key, DriftReading], namespace: str, name: str, status: ModelDeploymentStatus
) -> DriftReading | None:
    """The stable revision's reading, when there is one."""
    stable = status.revisions.stable if status.revisions else None
    return readings.get((namespace, name, stable)) if stable else None


def has_reference(spec: ModelDeploymentSpec) -> bool:
    """Whether staging builds a reference profile for ``spec`` (docs/monitoring.md)."""
    quantization = spec.optimization.quantization
    return spec.monitoring.reference is not None or (
        quantization is not None and quantization.calibration is not None
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(value, 2)


def report(
    spec: ModelDeploymentSpec, reading: DriftReading | None, prometheus: bool
) -> tuple[MonitoringStatus, Wanted | None]:
    """``status.monitoring`` and the Drifting condition (None: no condition, nothing measured
    yet) for a deployment serving ``spec`` whose stable revision reads ``reading``."""
    if not has_reference(spec):
        return MonitoringStatus(
            monitored=False,
            message="no reference data (spec.monitoring.reference or calibration data): "
            "drift is not monitored",
        ), None
    if not prometheus:
        return MonitoringStatus(
            monitored=True, message="the operator has no Prometheus address to read drift from"
        ), None
    if reading is None or reading.window_requests == 0:
        return MonitoringStatus(
            monitored=True, message="no drift measured yet: no requests served"
        ), None
    needed = min(spec.monitoring.min_requests, spec.monitoring.window.requests)
    if reading.window_requests < needed:
        # A PSI over a part-filled window is noise: held-out digits, which match the reference,
        # once read a predictions PSI of 0.24 over 24 requests, a hair under the 0.25 threshold.
        # No verdict either way until the window holds enough; the condition keeps the last.
        return MonitoringStatus(
            monitored=True,
            window_requests=reading.window_requests,
            message=f"{reading.window_requests} of the {needed} requests needed to judge drift "
            "(spec.monitoring.minRequests) are in the window",
        ), None
    threshold = spec.monitoring.psi_threshold
    worst_input, worst = max(reading.inputs.items(), key=lambda kv: kv[1], default=(None, None))
    status = MonitoringStatus(
        monitored=True,
        worst_psi=_rounded(worst),
        worst_input=worst_input,
        prediction_psi=_rounded(reading.prediction_psi),
        window_requests=reading.window_requests,
    )
    over = []
    if worst is not None and worst > threshold:
        over.append(f"input {worst_input} PSI {worst:.2f}")
    if reading.prediction_psi is not None and reading.prediction_psi > threshold:
        over.append(f"predictions PSI {reading.prediction_psi:.2f}")
    numbers = f"over the last {reading.window_requests} requests"
    if over:
        reason = "InputDrift" if worst is not None and worst > threshold else "PredictionDrift"
        message = f"{'; '.join(over)} > {threshold:g} {numbers}, against the reference profile"
        return status, Wanted(ConditionType.DRIFTING, True, reason, message)
    summary = [f"worst input PSI {worst:.2f} ({worst_input})" if worst is not None else ""]
    if reading.prediction_psi is not None:
        summary.append(f"predictions PSI {reading.prediction_psi:.2f}")
    message = f"{', '.join(s for s in summary if s)} <= {threshold:g} {numbers}"
    return status, Wanted(ConditionType.DRIFTING, False, "NoDrift", message)
