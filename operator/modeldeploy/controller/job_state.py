"""Reading a finished staging Job: did it succeed, and what did ``modeldeploy stage`` report?

The staging container writes one JSON summary to its termination message (the kubelet copies
/dev/termination-log into the Pod status, at most 4 KB), so the operator learns the artifact's
URI, digest and parity numbers, or the failure's reason and numbers, without reading logs or
touching the artifact store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class StagingOutcome:
    phase: Phase
    reason: str = ""
    message: str = ""
    summary: dict[str, Any] | None = None


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def job_phase(job: dict[str, Any]) -> Phase:
    if _condition(job, "Complete"):
        return "Succeeded"
    if _condition(job, "Failed"):
        return "Failed"
    return "Running"


def termination_message(pods: list[dict[str, Any]], container: str) -> str | None:
    """The newest terminated ``container``'s message among ``pods``."""
    newest = sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
    for pod in reversed(newest):
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container:
                continue
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                return str(terminated["message"])
    return None


def staging_outcome(job: dict[str, Any], message: str | None) -> StagingOutcome:
    """What a staging Job amounts to, from its conditions and its pod's termination message."""
    phase = job_phase(job)
    if phase == "Running":
        active = (job.get("status") or {}).get("active") or 0
        failed = (job.get("status") or {}).get("failed") or 0
        detail = f"{active} pod(s) running" + (f", {failed} failed attempt(s)" if failed else "")
        return StagingOutcome("Running", "Staging", f"Job {job['metadata']['name']}: {detail}")
    summary: dict[str, Any] | None = None
    if message:
        try:
            parsed = json.loads(message)
            summary = parsed if isinstance(parsed, dict) else None
        except ValueError:
            summary = None
    if phase == "Succeeded":
        if summary is None or summary.get("status") != "Succeeded" or not summary.get("uri"):
            return StagingOutcome(
                "Failed",
                "StagingResultUnreadable",
                f"Job {job['metadata']['name']} succeeded but its termination message is not a "
                f"staging summary: {(message or '<empty>')[:500]}",
            )
        return StagingOutcome(
            "Succeeded", "CacheHit" if summary.get("cacheHit") else "Staged", "", summary
        )
    if summary is not None and summary.get("reason"):
        return StagingOutcome(
            "Failed", str(summary["reason"]), str(summary.get("message", "")), summary
        )
    failed = _condition(job, "Failed") or {}
    reason = str(failed.get("reason") or "StagingJobFailed")
    text = f"Job {job['metadata']['name']} failed: {failed.get('message') or reason}"
    if message:
        text += f"; last output: {message[-1000:]}"
    return StagingOutcome("Failed", reason, text)
