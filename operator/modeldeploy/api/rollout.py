"""``spec.rollout``: how a new artifact earns its traffic (canary steps, analysis, rollback)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from modeldeploy.api.base import ApiModel, CelRule, Duration, duration_seconds, nested

QUERY_NAME = r"^[a-z]([-a-z0-9_]*[a-z0-9])?$"
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MIN_REQUESTS = 10
HTTP_URL = r"^https?://[^\s/]+(/[^\s]*)?$"


class Strategy(StrEnum):
    """How a new revision replaces the stable one."""

    CANARY = "canary"
    IMMEDIATE = "immediate"


class Step(ApiModel):
    """One canary step: send this share of traffic to the canary, then analyse for the pause."""

    weight: Annotated[int, Field(ge=1, le=100)]
    """Percent of traffic on the canary during this step (1..100)."""

    pause: Duration = "1m"
    """How long to hold and analyse this step before moving on, e.g. 5m; at most 24h."""

    cel_rules = (
        CelRule(
            cel="duration(self.pause) <= duration('24h')",
            message="pause must be at most 24h",
            field_path=".pause",
            holds=lambda s: duration_seconds(s.pause) <= 24 * 3600,
        ),
    )


class PrometheusSource(ApiModel):
    """Where the analysis reads metrics from."""

    address: Annotated[str, Field(pattern=HTTP_URL, max_length=2048)]
    """Prometheus base URL, e.g. http://prometheus.monitoring:9090."""


class MetricQuery(ApiModel):
    """A custom PromQL check. The query must return one number. In it, {{canary}} and {{stable}}
    are replaced with the revisions (the modeldeploy_revision label of their pods' metrics),
    {{namespace}} with the namespace, {{deployment}} with the ModelDeployment's name and
    {{window}} with the step's elapsed time, e.g. 90s."""

    name: Annotated[str, Field(pattern=QUERY_NAME, max_length=63)]
    """Name shown in status and events."""

    query: Annotated[str, Field(min_length=1, max_length=4096)]
    """The PromQL expression."""

    max: float | None = None
    """Fail when the value is above this."""

    min: float | None = None
    """Fail when the value is below this."""

    cel_rules = (
        CelRule(
            cel="has(self.max) || has(self.min)",
            message="a query needs a max or a min threshold",
            field_path=".max",
            reason="FieldValueRequired",
            holds=lambda q: q.max is not None or q.min is not None,
        ),
    )


class Analysis(ApiModel):
    """Checks that run at every step over the step's pause; all must pass."""

    live_parity: bool = True
    """Send the artifact's golden inputs to the canary and compare with the stored outputs."""

    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    """Largest share of canary requests that may fail (0..1); 0.01 when unset and the runtime's
    errors are measured. Requests refused as the client's fault (4xx, INVALID_ARGUMENT) are not
    canary errors and are not counted."""

    min_requests: Annotated[int, Field(ge=1, le=10_000_000)] = DEFAULT_MIN_REQUESTS
    """Fewest canary requests the step's window must hold before its metrics are judged; a step
    with fewer is Inconclusive (the rollout pauses), never passed."""

    max_p99_latency_ms: Annotated[float, Field(gt=0, le=600_000)] | None = None
    """Largest canary p99 latency in milliseconds."""

    max_latency_ratio: Annotated[float, Field(ge=1, le=100)] | None = None
    """Largest canary p99 latency as a multiple of the stable revision's, e.g. 1.2."""

    max_prediction_psi: Annotated[float, Field(gt=0, le=10)] | None = None
    """Largest population stability index between the canary's and stable's top-1 classes
    over the same window (same traffic, so a different mix of answers is the canary's doing;
    0.25 is the field's usual "significant shift"). For classifiers on the modeldeploy-onnx
    runtime."""

    interval: Duration = "30s"
    """How often metrics are evaluated during a pause."""

    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    """Failed evaluations tolerated in one step before the rollout fails."""

    prometheus: PrometheusSource | None = None
    """Prometheus to query; defaults to the operator's configured address."""

    queries: Annotated[
        list[MetricQuery] | None,
        Field(
            max_length=20,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
        ),
    ] = None
    """Extra PromQL checks."""


class Shadow(ApiModel):
    """A shadow phase before the canary steps: stable mirrors a sample of its live requests to the
    candidate, in the dark, and compares the candidate's answers with its own. No client ever
    gets a candidate's answer, and none waits for one; a candidate that agrees with stable less
    often than minAgreement fails the rollout before any user traffic moves."""

    percent: Annotated[int, Field(ge=1, le=100)] = 20
    """Share of stable's requests mirrored to the candidate (1..100). Stable's extra load is at
    most this share, and requests the mirror has no room for are dropped, never queued."""

    duration: Duration = "10m"
    """How long the shadow runs and is analysed before the first canary step, e.g. 10m."""

    min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.99
    """Smallest share of compared requests on which the candidate must agree with stable (0..1).
    Agreement: every output within atol + rtol·|stable|, and the same top-1 class for a
    classifier."""

    atol: Annotated[float, Field(ge=0, le=1e6)] | None = None
    """Absolute tolerance of the comparison; defaults to the candidate artifact's parity atol."""

    rtol: Annotated[float, Field(ge=0, le=1e6)] | None = None
    """Relative tolerance of the comparison; defaults to the candidate artifact's parity rtol."""

    max_evidence: Annotated[int, Field(ge=0, le=20)] = 5
    """Disagreements kept as .npz (the input and both answers) in the artifact store, per
    rollout; 0 keeps none."""

    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 8
    """Most mirrored requests in flight per stable pod; a request sampled beyond that is dropped
    (counted, never waited for)."""

    timeout: Duration = "5s"
    """How long stable waits for the candidate's answer to a mirrored request before counting
    it an error. The client's request never waits for it."""

    cel_rules = (
        CelRule(
            cel="duration(self.duration) <= duration('24h') && duration(self.duration) >= "
            "duration('1s')",
            message="duration must be between 1s and 24h",
            field_path=".duration",
            holds=lambda s: 1 <= duration_seconds(s.duration) <= 24 * 3600,
        ),
        CelRule(
            cel="duration(self.timeout) <= duration('60s') && duration(self.timeout) >= "
            "duration('10ms')",
            message="timeout must be between 10ms and 60s",
            field_path=".timeout",
            holds=lambda s: 0.01 <= duration_seconds(s.timeout) <= 60,
        ),
    )


def _weights_not_increasing(r: RolloutSpec) -> Iterator[tuple[str, str]]:
    for i in range(1, len(r.steps)):
        previous = r.steps[i - 1].weight
        if r.steps[i].weight <= previous:
            yield f"steps[{i}].weight", f"must be greater than {previous}"


def _default_steps() -> list[Step]:
    return [Step(weight=10, pause="2m"), Step(weight=50, pause="2m")]


class RolloutSpec(ApiModel):
    """How changes to the model roll out."""

    strategy: Strategy = Strategy.CANARY
    """canary walks the steps with analysis; immediate swaps as soon as the new revision is ready."""

    steps: Annotated[
        list[Step],
        Field(
            min_length=1,
            max_length=20,
            json_schema_extra={
                "default": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "2m"}],
                "x-kubernetes-list-type": "atomic",
            },
        ),
    ] = Field(default_factory=_default_steps)
    """Canary steps; weights strictly increasing within 1..100. Promotion follows the last step."""

    shadow: Shadow | None = None
    """A shadow phase before the first step: the candidate answers mirrored live requests in the
    dark and must agree with stable (docs/canary.md#shadow)."""

    analysis: Analysis = nested(Analysis)
    """Analysis run at every step (and its interval, failureLimit, minRequests and maxErrorRate
    over the shadow phase too)."""

    auto_rollback: bool = True
    """On a failed analysis, send all traffic back to stable at once."""

    progress_deadline: Duration = "30m"
    """Longest the new revision may take to become ready before the rollout fails."""

    scale_down_delay: Duration | None = None
    """Standard mode: how long the pods the route has just stopped sending to keep running once
    every gateway has accepted that route: the old stable's at a promotion, the canary's at a
    rollback or abort (Argo Rollouts' scaleDownDelaySeconds and abortScaleDownDelaySeconds).
    A gateway serves a route it has accepted a moment later, and requests already sent finish
    meanwhile. Unset: the operator's MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS (30 s by default);
    at most 1h."""

    cel_rules = (
        CelRule(
            cel="self.steps.map(s, s.weight).isSorted()"
            " && self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight))",
            message="step weights must be strictly increasing",
            field_path=".steps",
            holds=lambda r: not any(_weights_not_increasing(r)),
            locate=_weights_not_increasing,
        ),
        CelRule(
            cel="!has(self.scaleDownDelay) || duration(self.scaleDownDelay) <= duration('1h')",
            message="scaleDownDelay must be at most 1h",
            field_path=".scaleDownDelay",
            holds=lambda r: (
                r.scale_down_delay is None or duration_seconds(r.scale_down_delay) <= 3600
            ),
        ),
        CelRule(
            cel="!has(self.shadow) || self.strategy == 'canary'",
            message="a shadow phase needs strategy canary (immediate has no phases)",
            field_path=".shadow",
            holds=lambda r: r.shadow is None or r.strategy == Strategy.CANARY,
        ),
    )
