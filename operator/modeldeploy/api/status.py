"""``status``: what the operator observed and did. Written only by the operator, through the
status subresource; the printer columns of ``kubectl get mdep`` read from here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from modeldeploy.api.base import ApiModel

REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionType(StrEnum):
    """The conditions a ModelDeployment reports."""

    ARTIFACT_READY = "ArtifactReady"
    DEPLOYED = "Deployed"
    ROLLOUT_PROGRESSING = "RolloutProgressing"
    READY = "Ready"
    DEGRADED = "Degraded"
    DRIFTING = "Drifting"


class ConditionStatus(StrEnum):
    """Condition status, as in the Kubernetes API conventions."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A condition in the shape of metav1.Condition."""

    type: Annotated[str, Field(max_length=316, pattern=r"^[A-Za-z][A-Za-z0-9]*$")]
    """ArtifactReady, Deployed, RolloutProgressing, Ready or Degraded."""

    status: ConditionStatus
    """True, False or Unknown."""

    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=REASON)]
    """CamelCase machine-readable reason for the last transition, e.g. ParityCheckFailed."""

    message: Annotated[str, Field(max_length=32768)] = ""
    """Human-readable details, with the measured numbers where there are any."""

    last_transition_time: datetime
    """When the status last changed."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation this condition was computed from."""


class ParityReport(ApiModel):
    """How close the staged graph came to the source model."""

    max_abs_diff: float
    """Largest absolute difference of any output element."""

    max_rel_diff: float
    """Largest relative difference of any output element."""

    top1_agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of samples whose arg-max agreed (classification outputs)."""

    samples: Annotated[int, Field(ge=0)]
    """Samples compared."""

    passed: bool
    """Whether the report is within the spec's tolerances."""


class ArtifactStatus(ApiModel):
    """The staged, verified artifact that serves (or will serve)."""

    uri: Annotated[str, Field(max_length=2048)]
    """storageUri of the model repository, as given to KServe."""

    key: Annotated[str, Field(max_length=253)] | None = None
    """Content key of the artifact in the store, e.g. resnet50-3f2a…."""

    staging_hash: Annotated[str, Field(pattern=r"^[a-f0-9]{10}$")] | None = None
    """Hash of the spec parts that produced this artifact; a spec whose hash differs is staged anew."""

    digest: Annotated[str, Field(pattern=r"^sha256:[a-f0-9]{64}$")]
    """sha256 of the source model file."""

    precision: Annotated[str, Field(max_length=16)]
    """Precision of the served graph."""

    size_bytes: Annotated[int, Field(ge=0)]
    """Size of model.onnx in bytes."""

    cache_hit: bool = False
    """True when an identical artifact already existed and nothing was converted."""

    parity: ParityReport | None = None
    """Parity report of the staging run."""


class Revisions(ApiModel):
    """The artifact revisions taking part in serving."""

    stable: Annotated[str, Field(max_length=253)] | None = None
    """Revision (artifact digest prefix) that serves by default."""

    canary: Annotated[str, Field(max_length=253)] | None = None
    """Revision being rolled out, if any."""

    failed: Annotated[str, Field(max_length=253)] | None = None
    """Revision whose rollout failed; it gets no traffic until the spec changes."""

    stable_uri: Annotated[str, Field(max_length=2048)] | None = None
    """storageUri of the stable revision's artifact."""

    canary_uri: Annotated[str, Field(max_length=2048)] | None = None
    """storageUri of the canary's artifact (or of the failed one, while it is kept at 0%)."""


class KServeCanary(ApiModel):
    """KServe >= 0.20: the candidate as an entry of the InferenceService's ``spec.canary``, as
    KServe reports it."""

    predictor: Annotated[str, Field(max_length=63)]
    """The entry's ``predictor.name``; KServe's Deployment and Service are
    ``<name>-<predictor>-predictor``."""

    traffic_percent: Annotated[int, Field(ge=0, le=100)] = 0
    """The entry's share as KServe reads it back (``status.canaryStatuses[].trafficPercent``)."""

    ready: bool = False
    """KServe's CanaryPredictorReady condition."""


class GatewayServing(ApiModel):
    """The route's generation that every gateway it is attached to has accepted, and since when
    the operator has seen that: the start of a scale-down delay (``spec.rollout.scaleDownDelay``)."""

    generation: Annotated[int, Field(ge=0)]
    """The HTTPRoute's ``metadata.generation``."""

    since: datetime
    """When the operator first read every parent's Accepted condition at that generation."""


class Traffic(ApiModel):
    """Where requests go now."""

    stable: Annotated[int, Field(ge=0, le=100)] = 100
    """Percent of traffic on the stable revision."""

    canary: Annotated[int, Field(ge=0, le=100)] = 0
    """Percent of traffic on the canary revision."""

    split: Annotated[str, Field(max_length=16)] = "100/0"
    """stable/canary, for the Traffic printer column."""

    kserve_canary: KServeCanary | None = None
    """KServe >= 0.20, during a Standard-mode rollout: the ``spec.canary`` entry."""

    gateway: GatewayServing | None = None
    """Standard mode, while a canary's pods exist: the route generation every gateway has
    accepted, and since when; absent while a gateway has not yet accepted the current one."""


class AnalysisReport(ApiModel):
    """The numbers of the last analysis run; absent numbers were not measured (no traffic, or
    the check is off)."""

    at: datetime
    """When the analysis ran."""

    passed: bool
    """Whether every check passed."""

    ready: bool
    """Whether the canary was ready (its runtime's self-test included)."""

    error_rate: float | None = None
    """Share of canary requests that failed over the step so far."""

    p99_latency_ms: float | None = None
    """Canary p99 latency over the step so far, in milliseconds."""

    stable_p99_latency_ms: float | None = None
    """Stable p99 latency over the same window, in milliseconds."""

    parity_max_abs_diff: float | None = None
    """Largest difference between the canary's live answers and the stored golden outputs."""

    requests: float | None = None
    """Canary requests counted over the window, client errors included."""

    client_error_rate: float | None = None
    """Share of canary requests refused as the client's fault (4xx, INVALID_ARGUMENT)."""

    stable_client_error_rate: float | None = None
    """The same share for stable over the same window, which the canary's is compared with."""

    prediction_psi: float | None = None
    """PSI between the canary's and stable's top-1 classes over the same window."""

    failures: Annotated[list[str] | None, Field(max_length=32)] = None
    """What failed, one line each."""

    inconclusive: Annotated[list[str] | None, Field(max_length=32)] = None
    """What could not be judged (too few requests, no series, no data), one line each; a run
    with any is not passed."""


class MonitoringStatus(ApiModel):
    """Drift of the stable revision's live traffic against its artifact's reference profile,
    as the operator last read it from Prometheus (docs/monitoring.md)."""

    monitored: bool = False
    """Whether drift is measured: the artifact has a reference profile."""

    message: Annotated[str, Field(max_length=1024)] | None = None
    """Why not, or what is known so far."""

    worst_psi: float | None = None
    """The highest PSI of an input channel, rounded to 0.01."""

    worst_input: Annotated[str, Field(max_length=300)] | None = None
    """Which input (and channel) it is, as input/channel."""

    prediction_psi: float | None = None
    """PSI of the top-1 classes, rounded to 0.01."""

    window_requests: Annotated[int, Field(ge=0)] | None = None
    """Requests the numbers stand on."""


class RolloutPhase(StrEnum):
    """Where a rollout is (``status.rollout.phase``)."""

    SHADOWING = "Shadowing"
    """The candidate answers mirrored requests in the dark, at 0% of traffic."""
    PROGRESSING = "Progressing"
    """A canary step: the canary at its weight, analysed over the step's pause."""
    PAUSED = "Paused"
    """Held at the step's weight by the pause annotation."""
    INCONCLUSIVE = "Inconclusive"
    """The step or the shadow ended without evidence either way: held until resume or abort."""
    PROMOTING = "Promoting"
    """All traffic moves to the new revision, which then becomes stable."""
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    FAILED = "Failed"
    """The analysis failed with autoRollback off: the weights are held until abort or promote."""

    @property
    def active(self) -> bool:
        """The rollout is under way (its canary exists and may hold traffic)."""
        return self in ACTIVE_PHASES

    @property
    def finished(self) -> bool:
        return not self.active


ACTIVE_PHASES = frozenset({RolloutPhase.SHADOWING, RolloutPhase.PROGRESSING, RolloutPhase.PAUSED,
                           RolloutPhase.PROMOTING, RolloutPhase.FAILED,
                           RolloutPhase.INCONCLUSIVE})  # fmt: skip
HOLDING_PHASES = frozenset({RolloutPhase.PAUSED, RolloutPhase.FAILED, RolloutPhase.INCONCLUSIVE})
"""Phases that keep the canary at its step's weight without analysing."""


def shadow_pending(rollout: RolloutStatus | None) -> bool:
    """Whether ``status.rollout`` has a shadow phase that has not passed yet."""
    return rollout is not None and rollout.shadow is not None and not rollout.shadow.done


class ShadowReport(ApiModel):
    """The shadow phase: how often the candidate agreed with stable on mirrored live requests."""

    candidate: Annotated[str, Field(max_length=253)]
    """The revision shadowed."""

    percent: Annotated[int, Field(ge=0, le=100)]
    """Share of stable's requests mirrored."""

    active: bool = False
    """Whether stable is told to mirror now (the shadow ConfigMap names this candidate)."""

    started_at: datetime | None = None
    """When the candidate was ready and mirroring was switched on: the shadow's clock."""

    done: bool = False
    """The shadow phase passed (or was skipped by a promote): the canary steps follow."""

    agreement: Annotated[float, Field(ge=0, le=1)] | None = None
    """Share of compared requests on which the candidate agreed with stable."""

    compared: Annotated[float, Field(ge=0)] | None = None
    """Mirrored requests answered by both and compared, over the analysis window."""

    disagreements: Annotated[float, Field(ge=0)] | None = None
    """Compared requests on which the candidate did not agree."""

    errors: Annotated[float, Field(ge=0)] | None = None
    """Mirrored requests the candidate failed or did not answer in time."""

    dropped: Annotated[float, Field(ge=0)] | None = None
    """Requests sampled for mirroring that stable had no room to send (never queued)."""

    max_abs_diff: float | None = None
    """The worst |candidate - stable| over any compared element."""

    candidate_p99_latency_ms: float | None = None
    """The candidate's p99 latency as stable saw it."""

    evidence: Annotated[list[str] | None, Field(max_length=20)] = None
    """Where each kept disagreement is (.npz: the request, stable's and the candidate's answer)."""


class RolloutStatus(ApiModel):
    """Progress of the current rollout, durable across operator restarts."""

    step: Annotated[int, Field(ge=0)] = 0
    """Index of the current step in spec.rollout.steps."""

    step_started_at: datetime | None = None
    """When the current step's weight was confirmed by the traffic status read back."""

    phase: RolloutPhase | None = None
    """Shadowing, Progressing, Paused, Inconclusive, Promoting, Promoted, RolledBack, Aborted or
    Failed."""

    started_at: datetime | None = None
    """When this rollout began (the canary revision was first applied)."""

    failure: Annotated[str, Field(max_length=4096)] | None = None
    """Why the rollout failed or was aborted, with the numbers."""

    inconclusive: Annotated[str, Field(max_length=4096)] | None = None
    """Why the step ended Inconclusive: what the analysis could not judge."""

    failed_checks: Annotated[int, Field(ge=0)] = 0
    """Failed analysis runs in the current step (compared with analysis.failureLimit)."""

    last_analysis: Annotated[str, Field(max_length=4096)] = ""
    """The last analysis numbers, e.g. error rate and p99 latency, as one line."""

    analysis: AnalysisReport | None = None
    """The last analysis numbers."""

    shadow: ShadowReport | None = None
    """The shadow phase of this rollout (spec.rollout.shadow), when it has one."""


class StagingStatus(ApiModel):
    """The staging Job's attempts for one staging hash: a Job that failed for a reason another
    attempt may fix (an unreachable source or store) is made again, with a growing delay."""

    staging_hash: Annotated[str, Field(pattern=r"^[a-f0-9]{10}$")]
    """The spec parts these attempts stage."""

    attempt: Annotated[int, Field(ge=1, le=100)]
    """Which Job attempt comes (or runs) now, from 1."""


class ModelDeploymentStatus(ApiModel):
    """Observed state of a ModelDeployment."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation the operator last acted on."""

    conditions: Annotated[
        list[Condition] | None,
        Field(
            max_length=16,
            json_schema_extra={
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        ),
    ] = None
    """Current conditions."""

    artifact: ArtifactStatus | None = None
    """The staged artifact."""

    staging: StagingStatus | None = None
    """Staging Job attempts, when one is retried."""

    revisions: Revisions | None = None
    """Stable and canary revisions."""

    traffic: Traffic | None = None
    """Current traffic split."""

    rollout: RolloutStatus | None = None
    """Rollout progress."""

    url: Annotated[str, Field(max_length=2048)] | None = None
    """The inference endpoint, from the InferenceService."""

    precision: Annotated[str, Field(max_length=16)] | None = None
    """Precision of the artifact the stable revision serves (a canary's may differ)."""

    monitoring: MonitoringStatus | None = None
    """Drift monitoring of the stable revision."""

    @classmethod
    def read(cls, body: dict[str, Any]) -> ModelDeploymentStatus:
        """The status of a ModelDeployment as the API server returned it (empty when unset).
        The CRD's schema is generated from these models and prunes what it does not know, so
        a stored status always parses."""
        return cls.model_validate(body.get("status") or {})


def observed_generation(body: dict[str, Any]) -> int | None:
    """``status.observedGeneration`` of a raw ModelDeployment, without parsing the rest (the
    event filter's question, asked of every event)."""
    value = (body.get("status") or {}).get("observedGeneration")
    return int(value) if value is not None else None
