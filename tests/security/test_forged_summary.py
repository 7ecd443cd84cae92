"""The staging pod runs the tenant's code, so its termination message is the tenant's word.
Each test is a forged summary (issue 16, item 3) and what the operator's plan makes of it:
``ArtifactReady=False`` reason ``InvalidStagingResult``, nothing applied, the status schema
intact. The plan is the operator's one decision function; the reading of the message is
``staging_outcome``, as the operator runs them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from modeldeploy.controller.job_state import FAILURE_REASONS, staging_outcome
from modeldeploy.controller.reconcile import plan
from modeldeploy.staging import errors
from tests.unit.test_controller import CONFIG, NOW, SUMMARY, body_of, example, job, observed

DONE = [{"type": "Complete", "status": "True"}]
FAILED = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]


def outcome_of(summary: dict[str, Any], conditions: list[dict[str, str]]) -> Any:
    return staging_outcome(job(conditions), json.dumps(summary))


def forged(**changes: Any) -> dict[str, Any]:
    summary = copy.deepcopy(SUMMARY)
    summary.update(changes)
    return summary


@pytest.mark.parametrize(
    ("summary", "said"),
    [
        # another tenant's artifact as this one's storageUri
        (forged(uri="pvc://artifacts/store/demo/payments-0123456789abcdef0123",
                key="payments-0123456789abcdef0123"), "is not an artifact of digits"),
        # a uri outside the store, for KServe's storage initializer to fetch
        (forged(uri="https://attacker.example/model"), "is not the store's"),
        # a key that walks out of the store in the operator's own reads
        (forged(key="digits-../../etc"), "field key"),
        # values that break the status schema, so every status patch would fail with 422
        (forged(precision="fp64; drop"), "field precision"),
        (forged(sizeBytes=-1), "field sizeBytes"),
        (forged(parity={"top1Agreement": 7}), "field parity.top1Agreement"),
        # a summary with keys missing, which raised KeyError in plan before
        ({"status": "Succeeded", "uri": SUMMARY["uri"]}, "field key"),
    ],
)  # fmt: skip
def test_a_forged_success_is_refused_and_nothing_is_deployed(
    summary: dict[str, Any], said: str
) -> None:
    body = body_of(example())
    first = plan(observed(body), CONFIG, NOW)  # creates the staging Job
    assert first.create_job is not None
    body["status"] = first.status.wire()
    done = {**first.create_job, "status": {"conditions": DONE}}
    outcome = staging_outcome(done, json.dumps(summary))
    result = plan(observed(body, jobs=[done], outcome=outcome), CONFIG, NOW)
    conditions = {c["type"]: c for c in result.status.wire()["conditions"]}
    assert conditions["ArtifactReady"]["status"] == "False"
    assert conditions["ArtifactReady"]["reason"] == "InvalidStagingResult"
    assert said in conditions["ArtifactReady"]["message"]
    assert "artifact" not in result.status.wire()
    assert result.apply_isvc is None
    assert len(json.dumps(result.status.wire())) < 16_000


def test_a_forged_failure_reason_cannot_break_the_status_schema() -> None:
    summary = {"status": "Failed", "reason": "x" * 5000, "message": "m" * 100_000}
    outcome = outcome_of(summary, FAILED)
    assert outcome.reason == "InvalidStagingResult"
    assert len(outcome.message) < 200
    honest = outcome_of({"status": "Failed", "reason": "ParityCheckFailed",
                         "message": "m" * 100_000}, FAILED)  # fmt: skip
    assert honest.reason == "ParityCheckFailed"
    assert len(honest.message) == 2000


def test_the_operator_knows_every_reason_staging_reports() -> None:
    reported = {
        cls.reason
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.StagingError)
    }
    assert reported | {"InvalidSpec"} == FAILURE_REASONS
