"""The rollout's transition table: every active phase against every kind of input, each cell the
phase that follows. The narrative tests (test_rollout.py, test_shadow_rollout.py) walk whole
rollouts; this one pins each transition on its own, so a change to one cell shows up as that
cell. Time is injected: each state's period began at T0, and "at the end" is its pause later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.rollout import RolloutSpec
from modeldeploy.api.status import RolloutPhase
from modeldeploy.controller.rollout import AnalysisResult, Artifact, Inputs, Serving, decide
from tests.unit.test_rollout import stored

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=1)
STABLE = Artifact("aaaaaaaaaa", "pvc://a/old")
NEW = Artifact("bbbbbbbbbb", "pvc://a/new")
SPEC = RolloutSpec.model_validate(
    {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
     "shadow": {"duration": "1m"}}
)  # fmt: skip
ISO = "2026-11-30T12:00:00Z"


def state(phase: RolloutPhase) -> dict[str, Any]:
    """A rollout of NEW in ``phase`` at step 1 (or its shadow), its period begun at T0."""
    rollout: dict[str, Any] = {"phase": phase.value, "step": 0, "startedAt": ISO,
                               "stepStartedAt": ISO, "failedChecks": 0,
                               "shadow": {"candidate": NEW.revision, "percent": 20,
                                          "active": phase == RolloutPhase.SHADOWING,
                                          "startedAt": ISO, "done": phase != RolloutPhase.SHADOWING}}  # fmt: skip
    if phase == RolloutPhase.INCONCLUSIVE:
        rollout["inconclusive"] = "no data"
    return {"revisions": {"stable": STABLE.revision, "stableUri": STABLE.uri,
                          "canary": NEW.revision, "canaryUri": NEW.uri}, "rollout": rollout}  # fmt: skip


def at_weight(phase: RolloutPhase) -> Serving:
    weight = 0 if phase == RolloutPhase.SHADOWING else 10
    return Serving((100 - weight, weight), canary_ready=True, canary_url="http://c", exists=True)


INPUTS: dict[str, Any] = {
    "abort": ({"modeldeploy.io/abort": "true"}, None, None),
    "promote --full": ({"modeldeploy.io/promote": "full"}, None, None),
    "promote (one step)": ({"modeldeploy.io/promote": "step"}, None, None),
    "resume": ({"modeldeploy.io/resume": "true"}, None, None),
    "analysis passed at the end": ({}, AnalysisResult(END, True, True), None),
    "analysis failed": ({}, AnalysisResult(END, False, True, failures=["bad"]), None),
    "nothing to judge at the end": (
        {},
        AnalysisResult(END, False, True, inconclusive=["0"]),
        None,
    ),
    "the canary cannot start": ({}, None, "RevisionFailed: crash"),
}
P = RolloutPhase
TABLE: dict[RolloutPhase, dict[str, RolloutPhase]] = {
    P.SHADOWING: {"abort": P.ABORTED, "promote --full": P.PROMOTING,
                  "promote (one step)": P.PROGRESSING, "resume": P.SHADOWING,
                  "analysis passed at the end": P.PROGRESSING, "analysis failed": P.ROLLED_BACK,
                  "nothing to judge at the end": P.INCONCLUSIVE,
                  "the canary cannot start": P.ROLLED_BACK},
    P.PROGRESSING: {"abort": P.ABORTED, "promote --full": P.PROMOTING,
                    "promote (one step)": P.PROGRESSING, "resume": P.PROGRESSING,
                    "analysis passed at the end": P.PROGRESSING,
                    "analysis failed": P.ROLLED_BACK,
                    "nothing to judge at the end": P.INCONCLUSIVE,
                    "the canary cannot start": P.ROLLED_BACK},
    # Held by its annotation: a one-step promote moves it a step and it stays paused there.
    P.PAUSED: {"abort": P.ABORTED, "promote --full": P.PROMOTING,
               "promote (one step)": P.PAUSED, "resume": P.PROGRESSING,
               "analysis passed at the end": P.PAUSED, "analysis failed": P.PAUSED,
               "nothing to judge at the end": P.PAUSED,
               "the canary cannot start": P.ROLLED_BACK},
    P.INCONCLUSIVE: {"abort": P.ABORTED, "promote --full": P.PROMOTING,
                     "promote (one step)": P.PROGRESSING, "resume": P.PROGRESSING,
                     "analysis passed at the end": P.INCONCLUSIVE,
                     "analysis failed": P.INCONCLUSIVE,
                     "nothing to judge at the end": P.INCONCLUSIVE,
                     "the canary cannot start": P.ROLLED_BACK},
    P.PROMOTING: {"abort": P.ABORTED, "promote --full": P.PROMOTING,
                  "promote (one step)": P.PROMOTING, "resume": P.PROMOTING,
                  "analysis passed at the end": P.PROMOTING, "analysis failed": P.PROMOTING,
                  "nothing to judge at the end": P.PROMOTING,
                  "the canary cannot start": P.PROMOTING},
}  # fmt: skip


@pytest.mark.parametrize("given", list(INPUTS))
@pytest.mark.parametrize("phase", list(TABLE))
def test_each_phase_moves_on_each_input_as_the_table_says(phase: RolloutPhase, given: str) -> None:
    annotations, analysis, failure = INPUTS[given]
    if phase == P.PAUSED and given != "resume":  # paused by its annotation, as it would be
        annotations = {"modeldeploy.io/pause": "true", **annotations}
    serving = at_weight(phase)
    if failure is not None:
        serving = Serving((100, 0), canary_ready=False, canary_failed=failure, exists=True)
    d = decide(Inputs(SPEC, True, NEW, stored(state(phase)), serving, annotations, END, analysis))
    assert d.rollout is not None
    assert d.rollout.phase == TABLE[phase][given], (d.rollout, [e.reason for e in d.events])
    # Whatever the cell, a failed or aborted revision gets no traffic, and the shadow mirrors
    # only while its phase is Shadowing.
    if d.rollout.phase in (P.ABORTED, P.ROLLED_BACK):
        assert (d.failed, d.canary_percent) == (True, 0)
    assert d.shadow_on == (d.rollout.phase == P.SHADOWING and d.rollout.shadow.active)
