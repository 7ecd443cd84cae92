"""Status conditions in the shape of metav1.Condition, and the Events their transitions emit.

A condition's lastTransitionTime only moves when its status changes, so re-running a
reconciliation on an unchanged world writes nothing (the status compares equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from modeldeploy.api.status import Condition, ConditionStatus, ConditionType

ORDER = [c.value for c in ConditionType]


@dataclass(frozen=True)
class Wanted:
    """A condition as the reconciliation wants it; time and generation are filled in."""

    type: ConditionType
    status: bool | None  # None is Unknown
    reason: str
    message: str = ""

    @classmethod
    def of(cls, condition: Condition, kind: ConditionType) -> Wanted:
        """A stored condition, wanted again as it is."""
        status = {ConditionStatus.TRUE: True, ConditionStatus.FALSE: False}.get(condition.status)
        return cls(kind, status, condition.reason, condition.message)

    @property
    def status_value(self) -> ConditionStatus:
        return {
            True: ConditionStatus.TRUE,
            False: ConditionStatus.FALSE,
            None: ConditionStatus.UNKNOWN,
        }[self.status]


@dataclass(frozen=True)
class Transition:
    """An Event to post: a condition changed status or reason."""

    type: str  # Normal or Warning
    reason: str
    message: str


QUIET_REASONS = {
    "NoRollout",
    "WaitingForArtifact",
    "InferenceServiceMissing",
    "InferenceServiceNotReady",
    "AsExpected",
    "NoDrift",
}
"""States a condition starts in while an earlier step is under way: never warned of."""

GOOD_WHEN_TRUE = {
    ConditionType.ARTIFACT_READY,
    ConditionType.DEPLOYED,
    ConditionType.READY,
}
GOOD_ENDINGS = {"NoRollout", "Promoted"}
"""RolloutProgressing=False reasons that are not a problem (the others are a failed rollout)."""


def _good(want: Wanted) -> bool:
    """Whether ``want`` is a state no one needs warning of."""
    if want.status is None or want.reason in QUIET_REASONS:
        return True
    if want.type == ConditionType.ROLLOUT_PROGRESSING:
        return want.status is True or want.reason in GOOD_ENDINGS
    return (want.status is True) == (want.type in GOOD_WHEN_TRUE)


def _was_bad(condition: Condition) -> bool:
    """Whether a stored condition is a state that was warned of."""
    kind = next((t for t in ConditionType if t.value == condition.type), None)
    return kind is not None and not _good(Wanted.of(condition, kind))


def merge(
    previous: list[Condition] | None,
    wanted: list[Wanted],
    generation: int,
    now: datetime,
) -> tuple[list[Condition], list[Transition]]:
    """The new conditions list and the transitions between ``previous`` and it."""
    old = {c.type: c for c in previous or []}
    result = {t: c for t, c in old.items() if t not in {w.type.value for w in wanted}}
    transitions = []
    for want in wanted:
        before = old.get(want.type.value)
        changed = before is None or before.status != want.status_value
        result[want.type.value] = Condition(
            type=want.type.value,
            status=want.status_value,
            reason=want.reason,
            message=want.message[:32768],
            # Whole seconds, as metav1.Time: a stored time reads back equal, so an unchanged
            # condition is not written again.
            last_transition_time=(
                now.replace(microsecond=0)
                if before is None or changed
                else before.last_transition_time
            ),
            observed_generation=generation,
        )
        moved = changed or (before is not None and before.reason != want.reason)
        good = _good(want)
        # Every Warning is posted. A good state is posted only when it ends a Warning one (a
        # recovery): the way there on the happy path (staging, staged, applied, ready) is in
        # the status and the printer columns, and an Event each cost a write apiece.
        if moved and (not good or (before is not None and _was_bad(before))):
            transitions.append(
                Transition("Normal" if good else "Warning", want.reason, want.message)
            )
    ordered = sorted(result.values(), key=lambda c: ORDER.index(c.type) if c.type in ORDER else 99)
    return ordered, transitions
