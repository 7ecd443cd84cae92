"""Progressive delivery of a new artifact: canary steps, analysis, promotion and rollback.

Pure and level-based like ``reconcile.plan``: the rollout's whole state lives in the
ModelDeployment's status (``revisions``, ``rollout``, ``traffic``), so an operator restarted in
the middle of a rollout reads the same step and weights back and carries on; nothing is kept in
memory. ``decide`` takes that status, the new artifact, what the serving layer reports and (when
one ran) an analysis result, and returns the traffic to set and the status to write.

Traffic is moved in one of two ways, chosen by the deployment mode:

- Knative: one InferenceService; the canary is its latest revision and ``canaryTrafficPercent``
  is the canary's share. KServe sends the rest to ``latestRolledoutRevision`` (stable). The split
  is read back from ``status.components.predictor.traffic``. Rollback is ``canaryTrafficPercent:
  0``, which KServe applies at once, without a new revision.
- Standard: KServe ignores ``canaryTrafficPercent`` there, so the canary is a second
  InferenceService (``<name>-canary``) and a Gateway API HTTPRoute splits by weight. The route
  exists from the first deployment on (all to stable between rollouts): its host is the URL. Promotion
  moves all traffic to the canary, rolls the stable InferenceService to the new artifact, then
  moves traffic back and deletes the canary.

A step's clock starts only when the weights read back equal the step's weight, so time spent
waiting for KServe or the gateway is not counted as analysis time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from modeldeploy.api.base import duration_seconds
from modeldeploy.api.rollout import RolloutSpec, Strategy
from modeldeploy.api.status import (
    ACTIVE_PHASES,
    HOLDING_PHASES,
    AnalysisReport,
    ConditionType,
    GatewayServing,
    KServeCanary,
    ModelDeploymentStatus,
    Revisions,
    RolloutPhase,
    RolloutStatus,
    ShadowReport,
    Traffic,
    shadow_pending,
)
from modeldeploy.controller import naming
from modeldeploy.controller.conditions import Transition, Wanted

SHADOWING = RolloutPhase.SHADOWING
PROGRESSING = RolloutPhase.PROGRESSING
PAUSED = RolloutPhase.PAUSED
PROMOTING = RolloutPhase.PROMOTING
PROMOTED = RolloutPhase.PROMOTED
ROLLED_BACK = RolloutPhase.ROLLED_BACK
ABORTED = RolloutPhase.ABORTED
FAILED = RolloutPhase.FAILED
INCONCLUSIVE = RolloutPhase.INCONCLUSIVE
ACTIVE = tuple(ACTIVE_PHASES)
HOLDING = tuple(HOLDING_PHASES)
ENDED_BADLY = {ROLLED_BACK: "RolledBack", ABORTED: "Aborted", FAILED: "RolloutFailed"}
"""Phases of a rollout that failed, with their RolloutProgressing reason."""

FAILED_REVISION_REASONS = {"RevisionFailed", "RevisionMissing", "ContainerCrashing"}
"""Ready=False reasons that mean the revision will not come up by waiting."""

MESSAGE_LIMIT = 4000
"""A failure or an inconclusive reason is cut to this (the CRD allows 4096 characters)."""


@dataclass(frozen=True)
class Artifact:
    """A staged artifact as a rollout sees it: its revision (staging hash) and storageUri."""

    revision: str
    uri: str


@dataclass(frozen=True)
class Serving:
    """What KServe (and the gateway) report, reduced to what a rollout needs."""

    weights: tuple[int, int]
    """(stable, canary) percent as read back."""
    canary_ready: bool = False
    canary_failed: str | None = None
    """Why the canary revision cannot start, when it says so."""
    canary_url: str | None = None
    stable_settled_on: str | None = None
    """storageUri that the stable side serves with all its traffic, when that is settled."""
    latest_ready_uri: str | None = None
    """Knative: the storageUri of the InferenceService's latest revision, once it is ready."""
    exists: bool = False
    """Whether anything serves yet (an InferenceService exists)."""
    kserve_canary: KServeCanary | None = None
    """KServe >= 0.20: the ``spec.canary`` entry as KServe reports it, while there is one."""
    accepted_route: int | None = None
    """Standard mode, while a canary's pods exist: the route's generation once every gateway
    has accepted it (``route.accepted_generation``); None before, or with no canary."""


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class ShadowResult:
    """What the stable pods counted of their mirrored requests over the shadow's window."""

    agreement: float | None
    compared: float
    disagreements: float
    errors: float
    dropped: float
    max_abs_diff: float | None = None
    candidate_p99_latency_ms: float | None = None
    evidence: tuple[str, ...] = ()
    """Every evidence file kept in the artifact store for this candidate so far."""

    def applied_to(self, shadow: ShadowReport) -> ShadowReport:
        """``shadow`` with these numbers (a number not measured keeps its last value)."""
        numbers: dict[str, Any] = {
            "compared": round(self.compared, 3),
            "disagreements": round(self.disagreements, 3),
            "errors": round(self.errors, 3),
            "dropped": round(self.dropped, 3),
        }
        for key, value in (
            ("agreement", self.agreement),
            ("max_abs_diff", self.max_abs_diff),
            ("candidate_p99_latency_ms", self.candidate_p99_latency_ms),
        ):
            if value is not None:
                numbers[key] = round(value, 6)
        if self.evidence:
            numbers["evidence"] = list(self.evidence)
        return shadow.model_copy(update=numbers)

    def summary(self) -> str:
        agreement = "n/a" if self.agreement is None else f"{self.agreement:.4f}"
        text = (
            f"shadow agreement {agreement} over {self.compared:.0f} compared, "
            f"{self.errors:.0f} errors, {self.dropped:.0f} dropped"
        )
        if self.max_abs_diff is not None:
            text += f", worst |Δ| {self.max_abs_diff:.3g}"
        if self.candidate_p99_latency_ms is not None:
            text += f", candidate p99 {self.candidate_p99_latency_ms:.1f} ms"
        return text


@dataclass(frozen=True)
class AnalysisResult:
    """One analysis run over a step (see ``analysis.run_checks``)."""

    at: datetime
    passed: bool
    ready: bool
    failures: list[str] = field(default_factory=list)
    """Checks that judged the canary bad: counted against failureLimit, then rolled back."""
    inconclusive: list[str] = field(default_factory=list)
    """Checks that could not judge: too few requests, no series, no data. Never a pass."""
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    stable_p99_latency_ms: float | None = None
    parity_max_abs_diff: float | None = None
    requests: float | None = None
    client_error_rate: float | None = None
    stable_client_error_rate: float | None = None
    prediction_psi: float | None = None
    shadow: ShadowResult | None = None
    """The shadow phase's numbers, when this run judged one."""

    def report(self) -> AnalysisReport:
        """The numbers as ``status.rollout.analysis`` keeps them."""
        return AnalysisReport(
            at=stamp(self.at),
            passed=self.passed,
            ready=self.ready,
            error_rate=_rounded(self.error_rate),
            p99_latency_ms=_rounded(self.p99_latency_ms),
            stable_p99_latency_ms=_rounded(self.stable_p99_latency_ms),
            parity_max_abs_diff=_rounded(self.parity_max_abs_diff),
            requests=_rounded(self.requests),
            client_error_rate=_rounded(self.client_error_rate),
            stable_client_error_rate=_rounded(self.stable_client_error_rate),
            prediction_psi=_rounded(self.prediction_psi),
            failures=self.failures[:32] or None,
            inconclusive=self.inconclusive[:32] or None,
        )

    def summary(self) -> str:
        """One line with every number, for the condition message and ``modeldeploy status``."""
        parts = [self.shadow.summary()] if self.shadow is not None else []
        if self.error_rate is not None:
            parts.append(f"error rate {self.error_rate:.4f}")
        if self.requests is not None:
            parts.append(f"requests {self.requests:.0f}")
        if self.p99_latency_ms is not None:
            parts.append(f"p99 {self.p99_latency_ms:.1f} ms")
        if self.stable_p99_latency_ms is not None:
            parts.append(f"stable p99 {self.stable_p99_latency_ms:.1f} ms")
        if self.client_error_rate is not None:
            parts.append(
                f"client errors {self.client_error_rate:.4f} (stable "
                f"{self.stable_client_error_rate or 0:.4f})"
            )
        if self.parity_max_abs_diff is not None:
            parts.append(f"golden max |Δ| {self.parity_max_abs_diff:.3g}")
        if self.prediction_psi is not None:
            parts.append(f"prediction PSI {self.prediction_psi:.3f}")
        text = ", ".join(parts) or "no numbers"
        if self.failures:
            text += "; failed: " + "; ".join(self.failures)
        if self.inconclusive:
            text += "; inconclusive: " + "; ".join(self.inconclusive)
        return text[:MESSAGE_LIMIT]


@dataclass(frozen=True)
class Target:
    """The canary (and stable) of one rollout, as the analysis addresses them."""

    namespace: str
    deployment: str
    model: str
    """The model name the runtime serves (the ModelDeployment's name)."""
    canary: str
    stable: str
    canary_url: str | None
    artifact_store: str
    artifact_key: str | None
    window_seconds: int
    runtime: str
    """The serving runtime, whose own metrics measure the canary (``metric_sources``)."""
    knative: bool
    shadow: ShadowCheck | None = None
    """Set when the run judges a shadow phase rather than a canary step."""


@dataclass(frozen=True)
class ShadowCheck:
    """What a shadow phase's analysis needs beyond a step's."""

    min_agreement: float
    stable_url: str | None
    """Where stable's pods answer: their evidence of disagreements is collected from there."""
    max_evidence: int
    evidence: tuple[str, ...]
    """Evidence already kept for this candidate (status.rollout.shadow.evidence)."""


@dataclass(frozen=True)
class Inputs:
    """Everything ``decide`` reads."""

    spec: RolloutSpec
    knative: bool
    artifact: Artifact
    """The artifact staged from the current spec."""
    status: ModelDeploymentStatus
    """The ModelDeployment's status as stored."""
    serving: Serving
    annotations: dict[str, str]
    now: datetime
    analysis: AnalysisResult | None = None


@dataclass
class Decision:
    """What to do: the traffic to set, and the status to write."""

    stable_uri: str
    """Standard: the stable InferenceService's artifact. Knative: the stable revision's."""
    canary_uri: str | None = None
    """The artifact the canary side runs (Knative: the InferenceService's storageUri)."""
    canary_percent: int | None = None
    """Knative ``canaryTrafficPercent``; None for all traffic to the latest revision."""
    canary_weight: int = 0
    """Standard: the HTTPRoute's canary weight."""
    canary_isvc: bool = False
    """Standard: whether the canary InferenceService should exist."""
    route: bool = False
    """Standard: whether the HTTPRoute should exist."""
    revisions: Revisions = field(default_factory=Revisions)
    rollout: RolloutStatus | None = None
    """The rollout's new state; None leaves the stored one (there has never been a rollout)."""
    traffic: Traffic = field(default_factory=Traffic)
    conditions: list[Wanted] = field(default_factory=list)
    events: list[Transition] = field(default_factory=list)
    clear_annotations: list[str] = field(default_factory=list)
    requeue_after: float | None = None
    shadow_on: bool = False
    """Stable should mirror to the canary now (the shadow ConfigMap names it)."""
    settled: bool = False
    """No canary any more: all traffic on stable (recorded by ``_finish``)."""
    failed: bool = False
    """The canary revision failed or was aborted: it gets no traffic."""

    @property
    def knative_uri(self) -> str:
        return self.canary_uri or self.stable_uri


def stamp(when: datetime) -> datetime:
    """``when`` in whole seconds, as the status stores times (metav1.Time): a time written and
    read back compares equal, so an unchanged rollout is not written again."""
    return when.replace(microsecond=0)


def clock(inputs: Inputs) -> tuple[datetime, float] | None:
    """When the analysed period in progress started and how long it lasts in seconds: the
    shadow phase's, or the current step's once its weight reads back; None when no analysed
    period is running."""
    rollout = inputs.status.rollout
    if rollout is None:
        return None
    if rollout.phase == SHADOWING:
        shadow = rollout.shadow
        if shadow is None or shadow.started_at is None or not shadow.active:
            return None
        if inputs.spec.shadow is None:
            return None
        return shadow.started_at, duration_seconds(inputs.spec.shadow.duration)
    if rollout.phase != PROGRESSING:
        return None
    started, step = rollout.step_started_at, rollout.step
    if started is None or step >= len(inputs.spec.steps):
        return None
    if inputs.serving.weights[1] != inputs.spec.steps[step].weight:
        return None
    return started, duration_seconds(inputs.spec.steps[step].pause)


def _step_confirmed(inputs: Inputs) -> bool:
    """A step whose weight now reads back and whose clock has not started yet, or is about to
    restart: a paused step being resumed (its first analysis then runs at once, not an
    ``interval`` later)."""
    rollout, steps = inputs.status.rollout, inputs.spec.steps
    return (
        rollout is not None
        and (
            (rollout.phase == PROGRESSING and rollout.step_started_at is None)
            or rollout.phase == PAUSED
        )
        and rollout.step < len(steps)
        and inputs.serving.weights[1] == steps[rollout.step].weight
        and not paused(inputs.annotations)
    )


def analysis_due(inputs: Inputs) -> bool:
    """Whether an analysis should run now: a step's weight has just read back (its first run
    starts its clock, so the start and the first numbers are one status write), or a shadow or
    a step is being analysed (``clock``), the canary is ready and the last run is an interval
    old, or the period is over and no run has looked at its end yet."""
    rollout, revisions = inputs.status.rollout, inputs.status.revisions
    if rollout is None or revisions is None or revisions.canary != inputs.artifact.revision:
        return False
    if _control(inputs.annotations) or not inputs.serving.canary_ready:
        return False
    period = clock(inputs)
    if period is None:
        return _step_confirmed(inputs)
    started, seconds = period
    last = rollout.analysis.at if rollout.analysis is not None else None
    if last is None or last < started:
        return True
    end = started + timedelta(seconds=seconds)
    interval = duration_seconds(inputs.spec.analysis.interval)
    return inputs.now - last >= timedelta(seconds=interval) or (inputs.now >= end > last)


COMMANDS = {
    "abort": naming.ABORT_ANNOTATION,
    "promote": naming.PROMOTE_ANNOTATION,
    "retry": naming.RETRY_ANNOTATION,
    "resume": naming.RESUME_ANNOTATION,
}
"""One-shot command annotations, the operator removes each once acted on; first wins."""


def _control(annotations: dict[str, str]) -> str | None:
    """The one-shot command present: abort over promote over retry over resume. A promote is
    ``promote-step`` when its value is ``step`` (naming.PROMOTE_STEP)."""
    command = next((c for c, a in COMMANDS.items() if a in annotations), None)
    if command == "promote" and annotations[naming.PROMOTE_ANNOTATION] == naming.PROMOTE_STEP:
        return "promote-step"
    return command


def _restarts_failed(command: str | None) -> bool:
    """Whether ``command`` rolls a failed or aborted revision out again (a full promote sends
    it straight to 100%; a retry starts at the first step)."""
    return command in ("promote", "retry")


def command_pending(body: dict[str, Any]) -> bool:
    """A rollout command annotation not yet acted on: promote, abort, retry or resume present,
    or pause set or cleared without the phase following (the event filter's question, asked of
    every event: our own status patches come back as events, and only these need a
    reconciliation; it reads the raw body, which is cheaper than parsing it)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if any(a in annotations for a in COMMANDS.values()):
        return True
    phase = ((body.get("status") or {}).get("rollout") or {}).get("phase")
    return (phase == PAUSED) != paused(annotations) and phase in (PROGRESSING, PAUSED)


def paused(annotations: dict[str, str]) -> bool:
    """Whether the pause annotation is set to a true value."""
    return annotations.get(naming.PAUSE_ANNOTATION, "").lower() in ("true", "1", "yes")


def _transition(inputs: Inputs) -> Decision:
    """The next rollout state and its Events (every path ends in ``_finish``). Works on copies
    of the stored state: ``inputs`` is never changed."""
    status, art, serving, now = inputs.status, inputs.artifact, inputs.serving, inputs.now
    revisions = status.revisions.model_copy() if status.revisions else Revisions()
    rollout = status.rollout.model_copy(deep=True) if status.rollout else None
    d = Decision(stable_uri=revisions.stable_uri or art.uri)
    command = _control(inputs.annotations)
    if command:
        # The winner and every command it overrides: a promote next to an abort is moot.
        d.clear_annotations = [a for a in COMMANDS.values() if a in inputs.annotations]

    stable = revisions.stable
    if stable is None or not serving.exists:
        # First deployment: nothing serves, so there is nothing to protect.
        d.stable_uri = art.uri
        return _finish(d, Revisions(stable=art.revision, stable_uri=art.uri), None, settled=True)

    if art.revision == stable:
        # The spec is (back) on the stable artifact: any canary is abandoned, traffic all stable.
        if revisions.canary:
            d.events.append(
                Transition(
                    "Normal",
                    "CanaryAbandoned",
                    f"the spec is back on stable revision {stable}; canary "
                    f"{revisions.canary} gets no traffic",
                )
            )
        revisions = Revisions(stable=stable, stable_uri=d.stable_uri)
        return _finish(d, revisions, _ended(rollout), settled=True)

    if art.revision == revisions.failed and not _restarts_failed(command):
        # This revision's rollout failed or was aborted: it gets no traffic until the spec moves.
        d.canary_uri = revisions.canary_uri
        return _finish(d, revisions, rollout, settled=False, failed=True)

    if revisions.canary != art.revision or rollout is None or rollout.phase not in ACTIVE:
        # A new rollout (a newer spec replaces a canary in flight).
        retried = command == "retry" and art.revision == revisions.failed
        revisions = Revisions(stable=stable, stable_uri=d.stable_uri, canary=art.revision)
        immediate = inputs.spec.strategy == Strategy.IMMEDIATE
        shadow = inputs.spec.shadow
        rollout = RolloutStatus(
            phase=PROMOTING if immediate else SHADOWING if shadow else PROGRESSING,
            started_at=stamp(now),
            shadow=(
                ShadowReport(candidate=art.revision, percent=shadow.percent)
                if shadow is not None and not immediate
                else None
            ),
        )
        if retried:
            d.events.append(
                Transition("Normal", "RolloutRetried", f"retrying revision {art.revision}")
            )
        d.events.append(
            Transition(
                "Normal",
                "RolloutStarted",
                f"{inputs.spec.strategy.value} rollout of revision {art.revision} "
                f"({art.uri}); stable {stable} keeps the traffic until it is ready",
            )
        )
    revisions.canary_uri, revisions.failed = art.uri, None
    d.canary_uri = art.uri
    phase, step, steps = rollout.phase, rollout.step, inputs.spec.steps

    if command == "abort":
        return _rollback(d, inputs, revisions, rollout, ABORTED, "aborted by annotation")
    if command == "promote" and phase != PROMOTING:
        rollout.phase, rollout.inconclusive = PROMOTING, None
        phase = PROMOTING
        d.events.append(Transition("Normal", "PromoteRequested", "promoted by annotation"))

    if command == "promote-step" and phase == SHADOWING:
        phase = _end_shadow(d, rollout, "ended by annotation", len(steps))
    elif command == "promote-step" and phase in (PROGRESSING, *HOLDING):
        phase = _next_step(d, rollout, step, steps)
        step = rollout.step

    if phase == INCONCLUSIVE and command in ("resume", "retry"):
        shadowing = shadow_pending(rollout)
        d.events.append(
            Transition(
                "Normal",
                "RolloutResumed",
                "retrying the shadow phase after an inconclusive analysis"
                if shadowing
                else f"retrying step {step + 1} after an inconclusive analysis",
            )
        )
        phase = SHADOWING if shadowing else PROGRESSING
        rollout.phase, rollout.step_started_at, rollout.inconclusive = phase, None, None
        if shadowing and rollout.shadow is not None:
            rollout.shadow.started_at, rollout.shadow.active = None, False

    if phase == SHADOWING:
        shadowed = _shadow(d, inputs, revisions, rollout)
        if isinstance(shadowed, Decision):
            return shadowed
        phase = shadowed

    if phase in (PROGRESSING, PAUSED):
        if paused(inputs.annotations):
            if phase != PAUSED:
                d.events.append(Transition("Normal", "RolloutPaused", f"paused at step {step}"))
            rollout.phase = PAUSED
        elif phase == PAUSED:
            d.events.append(Transition("Normal", "RolloutResumed", f"resumed at step {step}"))
            rollout.phase, rollout.step_started_at = PROGRESSING, None
        phase = rollout.phase

    if phase in (PROGRESSING, *HOLDING):
        weight = steps[min(step, len(steps) - 1)].weight
        if not serving.canary_ready:
            return _wait_for_canary(d, inputs, revisions, rollout)
        _set_canary_weight(d, inputs, weight)
        if phase != PROGRESSING:
            return _finish(d, revisions, rollout, settled=False)
        if serving.weights[1] != weight:
            rollout.step_started_at = None
            d.requeue_after = 1.0
            return _finish(d, revisions, rollout, settled=False)
        started_at = rollout.step_started_at
        if started_at is None:
            # The clock starts now, or when the analysis run for this look began (``analysis_due``
            # asks for one as the weight reads back): that run is the step's first.
            first = inputs.analysis
            started_at = rollout.step_started_at = stamp(first.at if first is not None else now)
            rollout.failed_checks = 0
            d.events.append(
                Transition(
                    "Normal",
                    "CanaryStep",
                    f"step {step + 1}/{len(steps)}: canary {art.revision} at {weight}%, "
                    f"analysing for {steps[step].pause}",
                )
            )
        failed = _take_analysis(
            d, inputs, revisions, rollout, started_at, f"analysis failed at step {step + 1} "
            f"({weight}%)"
        )  # fmt: skip
        if failed is not None:
            return failed
        end = started_at + timedelta(seconds=duration_seconds(steps[step].pause))
        report = _judged_at_end(rollout.analysis, now, end)
        if report is not None and _only_inconclusive(report):
            # No evidence either way at the step's end: neither promote nor roll back.
            return _inconclusive(d, revisions, rollout, f"step {step + 1} ({weight}%)")
        if report is not None and report.passed:
            if step + 1 < len(steps):
                rollout.step, rollout.step_started_at, rollout.failed_checks = step + 1, None, 0
                _set_canary_weight(d, inputs, steps[step + 1].weight)
                d.requeue_after = 1.0
                return _finish(d, revisions, rollout, settled=False)
            rollout.phase = phase = PROMOTING
        else:
            interval = duration_seconds(inputs.spec.analysis.interval)
            left = (end - now).total_seconds()
            d.requeue_after = max(0.5, min(interval, left) if left > 0 else 0.5)
            return _finish(d, revisions, rollout, settled=False)

    # Promoting: all traffic to the new artifact, then it becomes stable.
    return _promote(d, inputs, revisions, rollout)


def _shadow(
    d: Decision, inputs: Inputs, revisions: Revisions, rollout: RolloutStatus
) -> Decision | RolloutPhase:
    """The shadow phase: the canary runs at 0% while stable mirrors to it. A Decision when this
    reconciliation ends here; the phase the rollout moved on to otherwise."""
    spec, serving, now = inputs.spec.shadow, inputs.serving, inputs.now
    steps = inputs.spec.steps
    if spec is None:  # the spec dropped its shadow mid-phase: the steps follow at once
        return _end_shadow(d, rollout, "removed from the spec", len(steps))
    revision = inputs.artifact.revision
    _set_canary_weight(d, inputs, 0)
    shadow = rollout.shadow or ShadowReport(candidate=revision, percent=spec.percent)
    shadow.candidate, shadow.percent = revision, spec.percent
    rollout.shadow = shadow
    if not serving.canary_ready or not serving.canary_url:
        return _wait_for_canary(d, inputs, revisions, rollout)
    started = shadow.started_at
    if started is None or not shadow.active:
        started = shadow.started_at = stamp(now)
        shadow.active = True
        rollout.failed_checks = 0
        d.events.append(
            Transition(
                "Normal",
                "ShadowStarted",
                f"stable mirrors {spec.percent}% of its requests to candidate {revision} for "
                f"{spec.duration}; no client gets its answers",
            )
        )
    failed = _take_analysis(
        d, inputs, revisions, rollout, started, "shadow phase failed before any user traffic moved"
    )
    if failed is not None:
        return failed
    end = started + timedelta(seconds=duration_seconds(spec.duration))
    report = _judged_at_end(rollout.analysis, now, end)
    if report is not None and _only_inconclusive(report):
        return _inconclusive(d, revisions, rollout, "the shadow phase")
    interval = duration_seconds(inputs.spec.analysis.interval)
    if report is not None and report.passed and not paused(inputs.annotations):
        d.events.append(
            Transition("Normal", "ShadowPassed", f"candidate {revision}: {rollout.last_analysis}")
        )
        return _end_shadow(d, rollout, "passed", len(steps))
    left = (end - now).total_seconds()
    d.requeue_after = max(0.5, min(interval, left) if left > 0 else interval)
    return _finish(d, revisions, rollout, settled=False)


def _take_analysis(
    d: Decision,
    inputs: Inputs,
    revisions: Revisions,
    rollout: RolloutStatus,
    started: datetime,
    where: str,
) -> Decision | None:
    """Record the analysis run during the period that began at ``started`` (a step's or the
    shadow's) into ``rollout``; the rollback, or the hold, once its failures pass failureLimit."""
    result = inputs.analysis
    if result is None or result.at < started:
        return None
    rollout.analysis = result.report()
    rollout.last_analysis = result.summary()
    if result.shadow is not None and rollout.shadow is not None:
        rollout.shadow = result.shadow.applied_to(rollout.shadow)
    if not result.failures:
        return None
    rollout.failed_checks += 1
    if rollout.failed_checks <= inputs.spec.analysis.failure_limit:
        return None
    return _rollback_or_fail(d, inputs, revisions, rollout, f"{where}: {result.summary()}")


def _judged_at_end(
    report: AnalysisReport | None, now: datetime, end: datetime
) -> AnalysisReport | None:
    """The last analysis, when the period is over and that analysis has looked at its end."""
    if report is not None and now >= end and report.at >= end:
        return report
    return None


def _inconclusive(d: Decision, revisions: Revisions, rollout: RolloutStatus, what: str) -> Decision:
    """``what`` (a step, the shadow) ended without evidence either way: it holds until a person
    resumes (the period again, with a fresh clock) or aborts."""
    why = "; ".join((rollout.analysis.inconclusive or []) if rollout.analysis else [])
    rollout.phase, rollout.inconclusive = INCONCLUSIVE, why[:MESSAGE_LIMIT]
    d.events.append(
        Transition(
            "Warning",
            "RolloutInconclusive",
            f"{what} ended without evidence: {why}; paused (resume retries it, abort rolls back)",
        )
    )
    return _finish(d, revisions, rollout, settled=False)


def _wait_for_canary(
    d: Decision, inputs: Inputs, revisions: Revisions, rollout: RolloutStatus
) -> Decision:
    """The canary is not ready (yet): fail when it says it never will be or the progress
    deadline has passed, else look again soon, with no traffic on it."""
    if inputs.serving.canary_failed:
        return _rollback_or_fail(
            d, inputs, revisions, rollout, f"canary not ready: {inputs.serving.canary_failed}"
        )
    started = rollout.started_at or inputs.now
    deadline = duration_seconds(inputs.spec.progress_deadline)
    if rollout.phase != FAILED and inputs.now - started > timedelta(seconds=deadline):
        return _rollback_or_fail(
            d,
            inputs,
            revisions,
            rollout,
            f"canary not ready within progressDeadline {inputs.spec.progress_deadline}",
        )
    _set_canary_weight(d, inputs, 0)
    d.requeue_after = 2.0
    return _finish(d, revisions, rollout, settled=False)


def _end_shadow(d: Decision, rollout: RolloutStatus, why: str, steps: int) -> RolloutPhase:
    """The shadow phase is over (passed, or skipped): mirroring stops and step 1 follows."""
    if why != "passed":
        d.events.append(
            Transition("Normal", "ShadowEnded", f"shadow phase {why}; step 1/{steps} next")
        )
    if rollout.shadow is not None:
        rollout.shadow.done, rollout.shadow.active = True, False
    rollout.phase, rollout.step, rollout.step_started_at = PROGRESSING, 0, None
    rollout.failed_checks, rollout.inconclusive = 0, None
    return PROGRESSING


def decide(inputs: Inputs) -> Decision:
    """The rollout status, the traffic and the conditions for ``inputs``: a transition
    (state, inputs → state, events), then the traffic and the conditions that state implies.
    See the module docstring."""
    d = _transition(inputs)
    _traffic(d, inputs)
    d.conditions.extend(_conditions(d, inputs))
    return d


def _next_step(d: Decision, rollout: RolloutStatus, step: int, steps: list[Any]) -> RolloutPhase:
    """``promote`` without ``--full``: the current step ends now, as if its pause had passed
    with the analysis passing; after the last step, promotion. A paused, failed-but-holding or
    inconclusive step moves on too, as Argo Rollouts' promote skips a pause."""
    rollout.inconclusive, rollout.failure, rollout.failed_checks = None, None, 0
    rollout.step_started_at = None
    if step + 1 < len(steps):
        d.events.append(
            Transition(
                "Normal",
                "PromoteRequested",
                f"step {step + 1} ended by annotation; step {step + 2}/{len(steps)} next",
            )
        )
        rollout.phase, rollout.step = PROGRESSING, step + 1
        return PROGRESSING
    d.events.append(
        Transition("Normal", "PromoteRequested", "last step ended by annotation; promoting")
    )
    rollout.phase = PROMOTING
    return PROMOTING


def _only_inconclusive(report: AnalysisReport) -> bool:
    """An analysis report that could not judge, and found nothing wrong."""
    return bool(report.inconclusive) and not report.failures


def _set_canary_weight(d: Decision, inputs: Inputs, weight: int) -> None:
    if inputs.knative:
        d.canary_percent = weight
    else:
        d.canary_isvc, d.route, d.canary_weight = True, True, weight


def _promote(d: Decision, inputs: Inputs, revisions: Revisions, rollout: RolloutStatus) -> Decision:
    art = inputs.artifact
    if inputs.serving.stable_settled_on == art.uri:
        rollout.phase, rollout.step_started_at = PROMOTED, None
        d.stable_uri, d.canary_uri = art.uri, None
        d.events.append(
            Transition("Normal", "RolloutPromoted", f"revision {art.revision} is stable")
        )
        revisions = Revisions(stable=art.revision, stable_uri=art.uri)
        return _finish(d, revisions, rollout, settled=True)
    rollout.phase = PROMOTING
    if inputs.knative:
        # No canaryTrafficPercent: the latest revision takes all traffic once ready.
        d.canary_percent = None if inputs.serving.canary_ready else 0
    else:
        # Serve everything from the ready canary while the stable InferenceService rolls to the
        # new artifact; the canary goes once the stable one serves it.
        d.stable_uri = art.uri
        d.canary_isvc = d.route = True
        d.canary_weight = 100 if inputs.serving.canary_ready else 0
    d.requeue_after = 1.0
    return _finish(d, revisions, rollout, settled=False)


def _rollback_or_fail(
    d: Decision, inputs: Inputs, revisions: Revisions, rollout: RolloutStatus, why: str
) -> Decision:
    if inputs.spec.auto_rollback:
        return _rollback(d, inputs, revisions, rollout, ROLLED_BACK, why)
    if rollout.phase != FAILED:
        d.events.append(
            Transition("Warning", "RolloutFailed", why + "; holding (autoRollback is off)")
        )
    rollout.phase, rollout.failure = FAILED, why[:MESSAGE_LIMIT]
    return _finish(d, revisions, rollout, settled=False)


def _rollback(
    d: Decision,
    inputs: Inputs,
    revisions: Revisions,
    rollout: RolloutStatus,
    phase: RolloutPhase,
    why: str,
) -> Decision:
    """All traffic to stable at once; the revision is marked failed."""
    revisions = Revisions(
        stable=revisions.stable,
        stable_uri=revisions.stable_uri,
        failed=inputs.artifact.revision,
        canary_uri=inputs.artifact.uri,
    )
    rollout.phase, rollout.failure, rollout.step_started_at = phase, why[:MESSAGE_LIMIT], None
    rollout.inconclusive = None
    d.canary_uri = inputs.artifact.uri
    d.events.append(
        Transition(
            "Warning",
            "RolloutRolledBack" if phase == ROLLED_BACK else "RolloutAborted",
            f"revision {inputs.artifact.revision}: {why}; all traffic back on stable "
            f"{revisions.stable}",
        )
    )
    return _finish(d, revisions, rollout, settled=False, failed=True)


def _ended(rollout: RolloutStatus | None) -> RolloutStatus | None:
    if rollout is not None and rollout.phase in ACTIVE:
        rollout.phase, rollout.failure = ABORTED, "the spec went back to stable"
    return rollout


def _finish(
    d: Decision,
    revisions: Revisions,
    rollout: RolloutStatus | None,
    settled: bool,
    failed: bool = False,
) -> Decision:
    """Where every transition ends: the new state, and whether the rollout is settled (no
    canary any more) or failed; ``decide`` then derives the traffic and the conditions."""
    if rollout is not None and rollout.shadow is not None:
        shadowing = rollout.phase == SHADOWING and rollout.shadow.active
        rollout.shadow.active = d.shadow_on = shadowing
    d.revisions, d.rollout = revisions, rollout
    d.settled, d.failed = settled, failed
    return d


def _traffic(d: Decision, inputs: Inputs) -> None:
    """What the serving layer is told, from the state ``_finish`` recorded: a failed revision
    gets nothing, a settled rollout leaves stable alone, and the traffic as read back."""
    serving = inputs.serving
    if d.failed:
        # Knative: the failed revision stays the latest, at 0%. Standard: it is deleted.
        d.canary_percent = 0 if inputs.knative else None
        d.canary_isvc, d.canary_weight = False, 0
        d.route = not inputs.knative
    elif d.settled and inputs.knative:
        # Back on (or first on) stable: hold the old rolled-out revision until the latest one
        # serves the stable artifact, so a failed canary revision never gets traffic meanwhile.
        # Not after a promotion: the latest revision is the promoted one, and a status that lags
        # the spec for a moment would otherwise send all traffic back to the old model.
        d.canary_uri = None
        if serving.exists and serving.latest_ready_uri != d.stable_uri and not _promoted(d):
            d.canary_percent = 0
    elif d.settled:
        d.canary_isvc, d.canary_weight = False, 0
    if not inputs.knative:
        # Standard mode always has the route, from the first deployment on: its host is the one
        # that splits traffic, and so the status URL clients follow (docs/canary.md#urls).
        d.route = True
    # Settled: no canary any more, whatever share the revision had while it was one.
    stable_w, canary_w = (100, 0) if d.settled else serving.weights
    d.traffic = Traffic(stable=stable_w, canary=canary_w, split=f"{stable_w}/{canary_w}",
                        kserve_canary=serving.kserve_canary, gateway=_gateway(inputs))  # fmt: skip


def _promoted(d: Decision) -> bool:
    return d.rollout is not None and d.rollout.phase == PROMOTED


def _gateway(inputs: Inputs) -> GatewayServing | None:
    """Since when every gateway has served the route as it is now: kept from the last look
    while the route's generation is the same, so a scale-down delay counts from the first look
    that found it accepted (``scale_down_wait``)."""
    accepted = inputs.serving.accepted_route
    if inputs.knative or accepted is None:
        return None
    last = inputs.status.traffic.gateway if inputs.status.traffic else None
    if last is not None and last.generation == accepted:
        return last
    return GatewayServing(generation=accepted, since=stamp(inputs.now))


def scale_down_wait(traffic: Traffic, now: datetime, delay: float) -> float | None:
    """Seconds before the pods the route's previous weights reached may stop: ``delay`` after
    every gateway was first seen serving the route as it is now (Argo Rollouts'
    scaleDownDelaySeconds), so a gateway that accepts a route a moment before it swaps its
    routers, and requests already sent, find those pods still there. 0 once they may stop;
    None while a gateway has not accepted the route yet."""
    if traffic.gateway is None:
        return None
    return max(0.0, delay - (now - traffic.gateway.since).total_seconds())


def _conditions(d: Decision, inputs: Inputs) -> list[Wanted]:
    """RolloutProgressing, as the state and the traffic read back say."""
    rollout, revisions = d.rollout or RolloutStatus(), d.revisions
    canary_w = d.traffic.canary
    phase, step, steps = rollout.phase, rollout.step, inputs.spec.steps
    summary = rollout.last_analysis
    if phase == INCONCLUSIVE:
        where = "shadow phase" if shadow_pending(rollout) else f"step {step + 1}/{len(steps)}"
        return [
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Inconclusive",
                f"{where}: canary {revisions.canary} held at {canary_w}%, the analysis could "
                f"not judge it: {rollout.inconclusive or ''}; "
                "'modeldeploy resume' retries it, 'modeldeploy abort' rolls back",
            )
        ]
    if phase == SHADOWING:
        shadow = rollout.shadow
        active = shadow is not None and shadow.active
        what = (
            f"stable mirrors {shadow.percent if shadow else 0}% of its requests to candidate "
            f"{revisions.canary}, which gets no traffic"
            if active
            else f"waiting for candidate {revisions.canary} to be ready"
        )
        if active and paused(inputs.annotations):
            what += "; paused: the steps wait for resume"
        return [
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Shadowing",
                f"shadow phase: {what}" + (f"; last analysis: {summary}" if summary else ""),
            )
        ]
    if phase in (PROGRESSING, PAUSED):
        return [
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Paused" if phase == PAUSED else "CanaryAnalysis",
                f"step {step + 1}/{len(steps)}: canary {revisions.canary} "
                f"{canary_w}% (target {steps[min(step, len(steps) - 1)].weight}%)"
                + (f"; last analysis: {summary}" if summary else ""),
            )
        ]
    if phase == PROMOTING:
        return [
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Promoting",
                f"revision {revisions.canary} takes all traffic",
            )
        ]
    if phase is not None and phase in ENDED_BADLY:
        return [
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                False,
                ENDED_BADLY[phase],
                rollout_failure(rollout),
            )
        ]
    return [
        Wanted(
            ConditionType.ROLLOUT_PROGRESSING,
            False,
            "Promoted" if phase == PROMOTED else "NoRollout",
            f"revision {revisions.stable} is stable",
        )
    ]


def rollout_failure(rollout: RolloutStatus | None) -> str:
    """The message of a failed rollout: why, with the numbers."""
    why = (rollout.failure if rollout else None) or "rollout failed"
    numbers = rollout.last_analysis if rollout else ""
    if numbers and numbers not in why:
        why += f" (last analysis: {numbers})"
    return why[:MESSAGE_LIMIT]
