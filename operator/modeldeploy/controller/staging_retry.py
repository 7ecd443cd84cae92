"""When a failed staging Job is made again: only for reasons another attempt may fix, a
limited number of times, each after a longer wait (like the Job controller's own pod backoff,
one level up). Pure: the time is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modeldeploy.api.status import StagingStatus
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.staging_job import job_attempt

RETRYABLE_REASONS = frozenset({"SourceUnreachable", "DestinationUnavailable"})
"""A source or store that could not be reached just now; every other failure is the spec's or
the model's, and another Job would only fail the same way."""


@dataclass(frozen=True)
class Retry:
    attempt: int
    """The attempt the next Job is."""
    of: int
    """Attempts in all."""
    at: datetime
    """When the next Job is made."""


def finished_at(job: dict[str, Any]) -> datetime | None:
    """When the Job failed (its Failed condition's lastTransitionTime)."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            stamp = cond.get("lastTransitionTime")
            if isinstance(stamp, str):
                return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return None


def next_retry(job: dict[str, Any], reason: str, config: OperatorConfig) -> Retry | None:
    """The next attempt for a failed staging Job, or None when there is none to make."""
    attempt = job_attempt(job)
    total = 1 + config.staging_retries
    failed = finished_at(job)
    if reason not in RETRYABLE_REASONS or attempt >= total or failed is None:
        return None
    wait = timedelta(seconds=config.staging_retry_seconds * 2 ** (attempt - 1))
    return Retry(attempt + 1, total, failed + wait)


def attempt_to_make(staging: StagingStatus | None, staging_hash: str) -> int:
    """Which attempt a new staging Job for ``staging_hash`` is: a retry recorded in the status
    for the same hash, or the first."""
    if staging is not None and staging.staging_hash == staging_hash:
        return staging.attempt
    return 1
