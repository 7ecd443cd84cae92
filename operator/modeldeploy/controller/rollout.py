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
    ConditionType,
    RolloutPhase,
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

FAILED_REVISION_REASONS = {"RevisionFailed", "RevisionMissing", "ContainerCrashing"}
"""Ready=False reasons that mean the revision will not come up by waiting."""


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

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "compared": round(self.compared, 3),
            "disagreements": round(self.disagreements, 3),
            "errors": round(self.errors, 3),
            "dropped": round(self.dropped, 3),
        }
        for key, value in (
            ("agreement", self.agreement),
            ("maxAbsDiff", self.max_abs_diff),
            ("candidateP99LatencyMs", self.candidate_p99_latency_ms),
        ):
            if value is not None:
                out[key] = round(value, 6)
        if self.evidence:
            out["evidence"] = list(self.evidence)
        return out

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

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": _iso(self.at), "passed": self.passed, "ready": self.ready}
        for key, value in (
            ("errorRate", self.error_rate),
            ("p99LatencyMs", self.p99_latency_ms),
            ("stableP99LatencyMs", self.stable_p99_latency_ms),
            ("parityMaxAbsDiff", self.parity_max_abs_diff),
            ("requests", self.requests),
            ("clientErrorRate", self.client_error_rate),
            ("stableClientErrorRate", self.stable_client_error_rate),
            ("predictionPsi", self.prediction_psi),
        ):
            if value is not None:
                out[key] = round(value, 6)
        if self.failures:
            out["failures"] = self.failures[:32]
        if self.inconclusive:
            out["inconclusive"] = self.inconclusive[:32]
        return out

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
        return text[:4000]


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
    status: dict[str, Any]
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
    revisions: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    traffic: dict[str, Any] = field(default_factory=dict)
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


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """A status timestamp (RFC 3339) as a datetime; None when absent."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def clock(inputs: Inputs) -> tuple[datetime, float] | None:
    """When the analysed period in progress started and how long it lasts in seconds: the
    shadow phase's, or the current step's once its weight reads back; None when no analysed
    period is running."""
    rollout = inputs.status.get("rollout") or {}
    phase = rollout.get("phase")
    if phase == SHADOWING:
        shadow = rollout.get("shadow") or {}
        started = parse_time(shadow.get("startedAt"))
        if started is None or inputs.spec.shadow is None or not shadow.get("active"):
            return None
        return started, duration_seconds(inputs.spec.shadow.duration)
    if phase != PROGRESSING:
        return None
    started = parse_time(rollout.get("stepStartedAt"))
    step = int(rollout.get("step") or 0)
    if started is None or step >= len(inputs.spec.steps):
        return None
    if inputs.serving.weights[1] != inputs.spec.steps[step].weight:
        return None
    return started, duration_seconds(inputs.spec.steps[step].pause)


def analysis_due(inputs: Inputs) -> bool:
    """Whether an analysis should run now: a shadow or a step is being analysed (``clock``), the
    canary is ready and the last run is an interval old, or the period is over and no run has
    looked at its end yet."""
    rollout = inputs.status.get("rollout") or {}
    revisions = inputs.status.get("revisions") or {}
    if revisions.get("canary") != inputs.artifact.revision:
        return False
    if _control(inputs.annotations) or not inputs.serving.canary_ready:
        return False
    period = clock(inputs)
    if period is None:
        return False
    started, seconds = period
    last = parse_time((rollout.get("analysis") or {}).get("at"))
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
    or pause set or cleared without the phase following (the event filter's question: our own
    status patches come back as events, and only these need a reconciliation)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if any(a in annotations for a in COMMANDS.values()):
        return True
    phase = ((body.get("status") or {}).get("rollout") or {}).get("phase")
    return (phase == PAUSED) != paused(annotations) and phase in (PROGRESSING, PAUSED)


def paused(annotations: dict[str, str]) -> bool:
    """Whether the pause annotation is set to a true value."""
    return annotations.get(naming.PAUSE_ANNOTATION, "").lower() in ("true", "1", "yes")


def _transition(inputs: Inputs) -> Decision:
    """The next rollout state and its Events (every path ends in ``_finish``)."""
    status, art, serving, now = inputs.status, inputs.artifact, inputs.serving, inputs.now
    revisions: dict[str, Any] = dict(status.get("revisions") or {})
    rollout: dict[str, Any] = dict(status.get("rollout") or {})
    d = Decision(stable_uri=revisions.get("stableUri") or art.uri)
    command = _control(inputs.annotations)
    if command:
        # The winner and every command it overrides: a promote next to an abort is moot.
        d.clear_annotations = [a for a in COMMANDS.values() if a in inputs.annotations]

    stable = revisions.get("stable")
    if stable is None or not serving.exists:
        # First deployment: nothing serves, so there is nothing to protect.
        revisions = {"stable": art.revision, "stableUri": art.uri}
        d.stable_uri = art.uri
        return _finish(d, inputs, revisions, None, settled=True)

    if art.revision == stable:
        # The spec is (back) on the stable artifact: any canary is abandoned, traffic all stable.
        if revisions.get("canary"):
            d.events.append(
                Transition(
                    "Normal",
                    "CanaryAbandoned",
                    f"the spec is back on stable revision {stable}; canary "
                    f"{revisions['canary']} gets no traffic",
                )
            )
        revisions = {"stable": stable, "stableUri": d.stable_uri}
        return _finish(d, inputs, revisions, _ended(rollout), settled=True)

    if art.revision == revisions.get("failed") and not _restarts_failed(command):
        # This revision's rollout failed or was aborted: it gets no traffic until the spec moves.
        d.canary_uri = revisions.get("canaryUri")
        return _finish(d, inputs, revisions, rollout, settled=False, failed=True)

    if revisions.get("canary") != art.revision or rollout.get("phase") not in ACTIVE:
        # A new rollout (a newer spec replaces a canary in flight).
        retried = command == "retry" and art.revision == revisions.get("failed")
        revisions = {"stable": stable, "stableUri": d.stable_uri, "canary": art.revision}
        immediate = inputs.spec.strategy == Strategy.IMMEDIATE
        shadow = inputs.spec.shadow
        rollout = {
            "phase": PROMOTING if immediate else SHADOWING if shadow else PROGRESSING,
            "step": 0,
            "startedAt": _iso(now),
            "failedChecks": 0,
        }
        if shadow is not None and not immediate:
            rollout["shadow"] = {"candidate": art.revision, "percent": shadow.percent}
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
    revisions["canaryUri"] = art.uri
    revisions.pop("failed", None)
    d.canary_uri = art.uri
    phase = rollout.get("phase")
    step = int(rollout.get("step") or 0)
    steps = inputs.spec.steps

    if command == "abort":
        return _rollback(d, inputs, revisions, rollout, ABORTED, "aborted by annotation")
    if command == "promote" and phase != PROMOTING:
        rollout = {**rollout, "phase": PROMOTING, "inconclusive": None}
        phase = PROMOTING
        d.events.append(Transition("Normal", "PromoteRequested", "promoted by annotation"))

    if command == "promote-step" and phase == SHADOWING:
        rollout, phase = _end_shadow(d, rollout, "ended by annotation", len(steps))
    elif command == "promote-step" and phase in (PROGRESSING, *HOLDING):
        rollout, phase = _next_step(d, rollout, step, steps)
        step = int(rollout.get("step") or 0)

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
        rollout = {**rollout, "phase": phase, "stepStartedAt": None, "inconclusive": None}
        if shadowing:
            rollout["shadow"] = {**rollout["shadow"], "startedAt": None, "active": False}

    if phase == SHADOWING:
        shadowed = _shadow(d, inputs, revisions, rollout)
        if isinstance(shadowed, Decision):
            return shadowed
        rollout, phase = shadowed

    if phase in (PROGRESSING, PAUSED):
        if paused(inputs.annotations):
            if phase != PAUSED:
                d.events.append(Transition("Normal", "RolloutPaused", f"paused at step {step}"))
            rollout = {**rollout, "phase": PAUSED}
        elif phase == PAUSED:
            d.events.append(Transition("Normal", "RolloutResumed", f"resumed at step {step}"))
            rollout = {**rollout, "phase": PROGRESSING, "stepStartedAt": None}
        phase = rollout["phase"]

    if phase in (PROGRESSING, *HOLDING):
        weight = steps[min(step, len(steps) - 1)].weight
        if not serving.canary_ready:
            return _wait_for_canary(d, inputs, revisions, rollout)
        _set_canary_weight(d, inputs, weight)
        if phase != PROGRESSING:
            return _finish(d, inputs, revisions, rollout, settled=False)
        if serving.weights[1] != weight:
            rollout["stepStartedAt"] = None
            d.requeue_after = 1.0
            return _finish(d, inputs, revisions, rollout, settled=False)
        started_at = parse_time(rollout.get("stepStartedAt"))
        if started_at is None:
            started_at = now
            rollout["stepStartedAt"] = _iso(now)
            rollout["failedChecks"] = 0
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
        report = rollout.get("analysis") or {}
        judged = _judged_at_end(report, now, end)
        if judged and _only_inconclusive(report):
            # No evidence either way at the step's end: neither promote nor roll back.
            return _inconclusive(d, inputs, revisions, rollout, f"step {step + 1} ({weight}%)")
        if judged and report.get("passed"):
            if step + 1 < len(steps):
                rollout.update(step=step + 1, stepStartedAt=None, failedChecks=0)
                _set_canary_weight(d, inputs, steps[step + 1].weight)
                d.requeue_after = 1.0
                return _finish(d, inputs, revisions, rollout, settled=False)
            rollout["phase"] = PROMOTING
            phase = PROMOTING
        else:
            interval = duration_seconds(inputs.spec.analysis.interval)
            left = (end - now).total_seconds()
            d.requeue_after = max(0.5, min(interval, left) if left > 0 else 0.5)
            return _finish(d, inputs, revisions, rollout, settled=False)

    # Promoting: all traffic to the new artifact, then it becomes stable.
    return _promote(d, inputs, revisions, rollout)


def _shadow(
    d: Decision, inputs: Inputs, revisions: dict[str, Any], rollout: dict[str, Any]
) -> Decision | tuple[dict[str, Any], str]:
    """The shadow phase: the canary runs at 0% while stable mirrors to it. A Decision when this
    reconciliation ends here; the rollout moved on to the steps otherwise."""
    spec, serving, now = inputs.spec.shadow, inputs.serving, inputs.now
    steps = inputs.spec.steps
    if spec is None:  # the spec dropped its shadow mid-phase: the steps follow at once
        return _end_shadow(d, rollout, "removed from the spec", len(steps))
    revision = inputs.artifact.revision
    _set_canary_weight(d, inputs, 0)
    shadow = {**(rollout.get("shadow") or {}), "candidate": revision, "percent": spec.percent}
    rollout = {**rollout, "shadow": shadow}
    if not serving.canary_ready or not serving.canary_url:
        return _wait_for_canary(d, inputs, revisions, rollout)
    started = parse_time(shadow.get("startedAt"))
    if started is None or not shadow.get("active"):
        started = now
        shadow.update(startedAt=_iso(now), active=True)
        rollout["failedChecks"] = 0
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
    report = rollout.get("analysis") or {}
    judged = _judged_at_end(report, now, end)
    if judged and _only_inconclusive(report):
        return _inconclusive(d, inputs, revisions, rollout, "the shadow phase")
    interval = duration_seconds(inputs.spec.analysis.interval)
    if judged and report.get("passed") and not paused(inputs.annotations):
        d.events.append(
            Transition("Normal", "ShadowPassed", f"candidate {revision}: {rollout['lastAnalysis']}")
        )
        return _end_shadow(d, rollout, "passed", len(steps))
    left = (end - now).total_seconds()
    d.requeue_after = max(0.5, min(interval, left) if left > 0 else interval)
    return _finish(d, inputs, revisions, rollout, settled=False)


def _take_analysis(
    d: Decision,
    inputs: Inputs,
    revisions: dict[str, Any],
    rollout: dict[str, Any],
    started: datetime,
    where: str,
) -> Decision | None:
    """Record the analysis run during the period that began at ``started`` (a step's or the
    shadow's) into ``rollout``; the rollback, or the hold, once its failures pass failureLimit."""
    result = inputs.analysis
    if result is None or result.at < started:
        return None
    rollout["analysis"] = result.report()
    rollout["lastAnalysis"] = result.summary()
    if result.shadow is not None and rollout.get("shadow") is not None:
        rollout["shadow"].update(result.shadow.report())
    if not result.failures:
        return None
    rollout["failedChecks"] = int(rollout.get("failedChecks") or 0) + 1
    if rollout["failedChecks"] <= inputs.spec.analysis.failure_limit:
        return None
    return _rollback_or_fail(d, inputs, revisions, rollout, f"{where}: {result.summary()}")


def _judged_at_end(report: dict[str, Any], now: datetime, end: datetime) -> bool:
    """The period is over and an analysis has looked at its end."""
    last = parse_time(report.get("at"))
    return now >= end and last is not None and last >= end


def _inconclusive(
    d: Decision, inputs: Inputs, revisions: dict[str, Any], rollout: dict[str, Any], what: str
) -> Decision:
    """``what`` (a step, the shadow) ended without evidence either way: it holds until a person
    resumes (the period again, with a fresh clock) or aborts."""
    why = "; ".join((rollout.get("analysis") or {}).get("inconclusive") or [])
    rollout = {**rollout, "phase": INCONCLUSIVE, "inconclusive": why}
    d.events.append(
        Transition(
            "Warning",
            "RolloutInconclusive",
            f"{what} ended without evidence: {why}; paused (resume retries it, abort rolls back)",
        )
    )
    return _finish(d, inputs, revisions, rollout, settled=False)


def _wait_for_canary(
    d: Decision, inputs: Inputs, revisions: dict[str, Any], rollout: dict[str, Any]
) -> Decision:
    """The canary is not ready (yet): fail when it says it never will be or the progress
    deadline has passed, else look again soon, with no traffic on it."""
    if inputs.serving.canary_failed:
        return _rollback_or_fail(
            d, inputs, revisions, rollout, f"canary not ready: {inputs.serving.canary_failed}"
        )
    started = parse_time(rollout.get("startedAt")) or inputs.now
    deadline = duration_seconds(inputs.spec.progress_deadline)
    if rollout.get("phase") != FAILED and inputs.now - started > timedelta(seconds=deadline):
        return _rollback_or_fail(
            d,
            inputs,
            revisions,
            rollout,
            f"canary not ready within progressDeadline {inputs.spec.progress_deadline}",
        )
    _set_canary_weight(d, inputs, 0)
    d.requeue_after = 2.0
    return _finish(d, inputs, revisions, rollout, settled=False)


def _end_shadow(
    d: Decision, rollout: dict[str, Any], why: str, steps: int
) -> tuple[dict[str, Any], str]:
    """The shadow phase is over (passed, or skipped): mirroring stops and step 1 follows."""
    if why != "passed":
        d.events.append(
            Transition("Normal", "ShadowEnded", f"shadow phase {why}; step 1/{steps} next")
        )
    shadow = {**(rollout.get("shadow") or {}), "done": True, "active": False}
    moved = {**rollout, "phase": PROGRESSING, "step": 0, "stepStartedAt": None,
             "failedChecks": 0, "inconclusive": None, "shadow": shadow}  # fmt: skip
    return moved, PROGRESSING


def decide(inputs: Inputs) -> Decision:
    """The rollout status, the traffic and the conditions for ``inputs``: a transition
    (state, inputs → state, events), then the traffic and the conditions that state implies.
    See the module docstring."""
    d = _transition(inputs)
    _traffic(d, inputs)
    d.conditions.extend(_conditions(d, inputs))
    return d


def _next_step(
    d: Decision, rollout: dict[str, Any], step: int, steps: list[Any]
) -> tuple[dict[str, Any], str]:
    """``promote`` without ``--full``: the current step ends now, as if its pause had passed
    with the analysis passing; after the last step, promotion. A paused, failed-but-holding or
    inconclusive step moves on too, as Argo Rollouts' promote skips a pause."""
    moved = {**rollout, "inconclusive": None, "failure": None, "failedChecks": 0}
    if step + 1 < len(steps):
        d.events.append(
            Transition(
                "Normal",
                "PromoteRequested",
                f"step {step + 1} ended by annotation; step {step + 2}/{len(steps)} next",
            )
        )
        return {**moved, "phase": PROGRESSING, "step": step + 1, "stepStartedAt": None}, PROGRESSING
    d.events.append(
        Transition("Normal", "PromoteRequested", "last step ended by annotation; promoting")
    )
    return {**moved, "phase": PROMOTING, "stepStartedAt": None}, PROMOTING


def _only_inconclusive(report: dict[str, Any]) -> bool:
    """An analysis report that could not judge, and found nothing wrong."""
    return bool(report.get("inconclusive")) and not report.get("failures")


def _set_canary_weight(d: Decision, inputs: Inputs, weight: int) -> None:
    if inputs.knative:
        d.canary_percent = weight
    else:
        d.canary_isvc, d.route, d.canary_weight = True, True, weight


def _promote(
    d: Decision, inputs: Inputs, revisions: dict[str, Any], rollout: dict[str, Any]
) -> Decision:
    art = inputs.artifact
    if inputs.serving.stable_settled_on == art.uri:
        revisions = {"stable": art.revision, "stableUri": art.uri}
        rollout = {**rollout, "phase": PROMOTED, "stepStartedAt": None}
        d.stable_uri, d.canary_uri = art.uri, None
        d.events.append(
            Transition("Normal", "RolloutPromoted", f"revision {art.revision} is stable")
        )
        return _finish(d, inputs, revisions, rollout, settled=True)
    rollout = {**rollout, "phase": PROMOTING}
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
    return _finish(d, inputs, revisions, rollout, settled=False)


def _rollback_or_fail(
    d: Decision, inputs: Inputs, revisions: dict[str, Any], rollout: dict[str, Any], why: str
) -> Decision:
    if inputs.spec.auto_rollback:
        return _rollback(d, inputs, revisions, rollout, ROLLED_BACK, why)
    if rollout.get("phase") != FAILED:
        d.events.append(
            Transition("Warning", "RolloutFailed", why + "; holding (autoRollback is off)")
        )
    rollout = {**rollout, "phase": FAILED, "failure": why}
    return _finish(d, inputs, revisions, rollout, settled=False)


def _rollback(
    d: Decision,
    inputs: Inputs,
    revisions: dict[str, Any],
    rollout: dict[str, Any],
    phase: str,
    why: str,
) -> Decision:
    """All traffic to stable at once; the revision is marked failed."""
    revisions = {
        "stable": revisions["stable"],
        "stableUri": revisions.get("stableUri"),
        "failed": inputs.artifact.revision,
        "canaryUri": inputs.artifact.uri,
    }
    rollout = {**rollout, "phase": phase, "failure": why, "stepStartedAt": None}
    rollout["inconclusive"] = None
    d.canary_uri = inputs.artifact.uri
    d.events.append(
        Transition(
            "Warning",
            "RolloutRolledBack" if phase == ROLLED_BACK else "RolloutAborted",
            f"revision {inputs.artifact.revision}: {why}; all traffic back on stable "
            f"{revisions['stable']}",
        )
    )
    return _finish(d, inputs, revisions, rollout, settled=False, failed=True)


def _ended(rollout: dict[str, Any]) -> dict[str, Any] | None:
    if not rollout:
        return None
    if rollout.get("phase") in ACTIVE:
        return {**rollout, "phase": ABORTED, "failure": "the spec went back to stable"}
    return rollout


def _finish(
    d: Decision,
    inputs: Inputs,
    revisions: dict[str, Any],
    rollout: dict[str, Any] | None,
    settled: bool,
    failed: bool = False,
) -> Decision:
    """Where every transition ends: the new state, and whether the rollout is settled (no
    canary any more) or failed; ``decide`` then derives the traffic and the conditions."""
    d.revisions = {k: v for k, v in revisions.items() if v is not None}
    if rollout is not None:
        rollout = {k: v for k, v in rollout.items() if v is not None}
        rollout.setdefault("step", 0)
    if rollout is not None and rollout.get("shadow"):
        shadowing = rollout.get("phase") == SHADOWING and bool(rollout["shadow"].get("active"))
        rollout["shadow"] = {**rollout["shadow"], "active": shadowing}
        d.shadow_on = shadowing
    d.rollout = rollout
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
        d.canary_uri = None
        if serving.exists and serving.latest_ready_uri != d.stable_uri:
            d.canary_percent = 0
    elif d.settled:
        d.canary_isvc, d.canary_weight = False, 0
    if not inputs.knative:
        # Standard mode always has the route, from the first deployment on: its host is the one
        # that splits traffic, and so the status URL clients follow (docs/canary.md#urls).
        d.route = True
    # Settled: no canary any more, whatever share the revision had while it was one.
    stable_w, canary_w = (100, 0) if d.settled else serving.weights
    d.traffic = {"stable": stable_w, "canary": canary_w, "split": f"{stable_w}/{canary_w}"}


def _conditions(d: Decision, inputs: Inputs) -> list[Wanted]:
    """RolloutProgressing, as the state and the traffic read back say."""
    rollout, revisions = d.rollout, d.revisions
    canary_w = d.traffic["canary"]
    conditions: list[Wanted] = []
    phase = (rollout or {}).get("phase", "")
    step = int((rollout or {}).get("step") or 0)
    steps = inputs.spec.steps
    summary = (rollout or {}).get("lastAnalysis") or ""
    if phase == INCONCLUSIVE:
        conditions.append(
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Inconclusive",
                (
                    "shadow phase"
                    if shadow_pending(rollout or {})
                    else f"step {step + 1}/{len(steps)}"
                )
                + f": canary {revisions.get('canary')} held at "
                f"{canary_w}%, the analysis could not judge it: "
                f"{(rollout or {}).get('inconclusive', '')}; "
                "'modeldeploy resume' retries it, 'modeldeploy abort' rolls back",
            )
        )
    elif phase == SHADOWING:
        shadow = (rollout or {}).get("shadow") or {}
        what = (
            f"stable mirrors {shadow.get('percent')}% of its requests to candidate "
            f"{revisions.get('canary')}, which gets no traffic"
            if shadow.get("active")
            else f"waiting for candidate {revisions.get('canary')} to be ready"
        )
        if shadow.get("active") and paused(inputs.annotations):
            what += "; paused: the steps wait for resume"
        conditions.append(
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Shadowing",
                f"shadow phase: {what}" + (f"; last analysis: {summary}" if summary else ""),
            )
        )
    elif phase in (PROGRESSING, PAUSED):
        conditions.append(
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Paused" if phase == PAUSED else "CanaryAnalysis",
                f"step {step + 1}/{len(steps)}: canary {revisions.get('canary')} "
                f"{canary_w}% (target {steps[min(step, len(steps) - 1)].weight}%)"
                + (f"; last analysis: {summary}" if summary else ""),
            )
        )
    elif phase == PROMOTING:
        conditions.append(
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                True,
                "Promoting",
                f"revision {revisions.get('canary')} takes all traffic",
            )
        )
    elif phase in (ROLLED_BACK, ABORTED, FAILED):
        reason = {ROLLED_BACK: "RolledBack", ABORTED: "Aborted", FAILED: "RolloutFailed"}[phase]
        conditions.append(
            Wanted(ConditionType.ROLLOUT_PROGRESSING, False, reason, rollout_failure(rollout))
        )
    else:
        conditions.append(
            Wanted(
                ConditionType.ROLLOUT_PROGRESSING,
                False,
                "Promoted" if phase == PROMOTED else "NoRollout",
                f"revision {revisions.get('stable')} is stable",
            )
        )
    return conditions


def rollout_failure(rollout: dict[str, Any] | None) -> str:
    """The message of a failed rollout: why, with the numbers."""
    rollout = rollout or {}
    why = str(rollout.get("failure") or "rollout failed")
    numbers = rollout.get("lastAnalysis")
    if numbers and numbers not in why:
        why += f" (last analysis: {numbers})"
    return why[:4000]
