"""A staging Job that failed because its source or store could not be reached just now is made
again, a limited number of times, each after a longer wait; one that failed for the spec's or
the model's fault is not (issue 16, item 9). The plan decides, with the time given."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from modeldeploy.api.artifact import staging_hash
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.job_state import StagingOutcome
from modeldeploy.controller.reconcile import plan
from modeldeploy.controller.staging_job import ATTEMPT_ANNOTATION, build_staging_job
from tests.unit.test_controller import NOW, UID, body_of, example, observed

CONFIG = OperatorConfig(
    artifact_store="pvc://artifacts/store", staging_retries=2, staging_retry_seconds=60
)
STORE = CONFIG.tenant_store("demo")


def failed_job(attempt: int, failed_at: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    body = body_of(example())
    deployment = example()
    job = build_staging_job(deployment, UID, CONFIG, attempt)
    job["status"] = {
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
             "lastTransitionTime": failed_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        ]
    }  # fmt: skip
    return body, job


def ready_of(result: Any) -> dict[str, Any]:
    return {c["type"]: c for c in result.status.wire()["conditions"]}["ArtifactReady"]


UNREACHABLE = StagingOutcome(
    "Failed",
    "SourceUnreachable",
    "cannot fetch https://models.example.com/cnn.pt (will be retried): 503",
)


def test_an_unreachable_source_is_retried_after_a_wait_that_doubles() -> None:
    body, job = failed_job(1, NOW)
    name = job["metadata"]["name"]
    # Within the first minute: wait, and say when.
    waiting = plan(
        observed(body, jobs=[job], outcome=UNREACHABLE), CONFIG, NOW + timedelta(seconds=10)
    )
    assert waiting.delete_jobs == []
    assert waiting.create_job is None
    assert waiting.requeue_after == 50
    assert ready_of(waiting)["reason"] == "SourceUnreachable"
    assert ready_of(waiting)["message"].endswith("; attempt 2 of 3 at 2026-11-23T12:01:00+00:00")
    # After it: the failed Job goes, and the status says which attempt comes.
    due = plan(observed(body, jobs=[job], outcome=UNREACHABLE), CONFIG, NOW + timedelta(seconds=61))
    assert due.delete_jobs == [name]
    digest = staging_hash(example(), STORE)
    assert due.status.wire()["staging"] == {"stagingHash": digest, "attempt": 2}
    assert ready_of(due)["message"].endswith("; making attempt 2 of 3 now")
    # Next time round, with the Job gone, attempt 2 is made.
    body["status"] = due.status.wire()
    again = plan(observed(body), CONFIG, NOW + timedelta(seconds=62))
    assert again.create_job is not None
    assert again.create_job["metadata"]["name"] == name
    assert again.create_job["metadata"]["annotations"][ATTEMPT_ANNOTATION] == "2"
    # The second wait is twice the first.
    body2, second = failed_job(2, NOW)
    early = plan(
        observed(body2, jobs=[second], outcome=UNREACHABLE), CONFIG, NOW + timedelta(seconds=100)
    )
    assert early.delete_jobs == []
    assert early.requeue_after == 20


def test_the_last_attempt_and_a_models_own_fault_are_not_retried() -> None:
    body, last = failed_job(3, NOW)
    final = plan(observed(body, jobs=[last], outcome=UNREACHABLE), CONFIG, NOW + timedelta(hours=1))
    assert final.delete_jobs == []
    assert final.create_job is None
    assert "attempt" not in ready_of(final)["message"]
    body, first = failed_job(1, NOW)
    parity = StagingOutcome("Failed", "ParityCheckFailed", "max |Δ| 0.3")
    kept = plan(observed(body, jobs=[first], outcome=parity), CONFIG, NOW + timedelta(hours=1))
    assert kept.delete_jobs == []
    assert ready_of(kept)["message"] == "max |Δ| 0.3"


def test_a_job_made_before_attempts_were_counted_is_the_first() -> None:
    body, job = failed_job(1, NOW)
    del job["metadata"]["annotations"]
    result = plan(
        observed(body, jobs=[job], outcome=UNREACHABLE), CONFIG, NOW + timedelta(seconds=61)
    )
    assert result.status.wire()["staging"]["attempt"] == 2
