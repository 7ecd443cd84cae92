"""Reading a finished staging Job: did it succeed, and what did ``modeldeploy stage`` report?

The staging container writes one JSON summary to its termination message (the kubelet copies
/dev/termination-log into the Pod status, at most 4 KB), so the operator learns the artifact's
URI, digest and parity numbers, or the failure's reason and numbers, without reading logs or
touching the artifact store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldeploy.api.optimization import Precision
from modeldeploy.controller.naming import PUBLISH_CONTAINER

Phase = Literal["Running", "Succeeded", "Failed"]

INVALID = "InvalidStagingResult"
"""The reason of a summary the operator will not believe: the staging pod runs the tenant's
code, so it may write anything into its termination message."""

FAILURE_REASONS = frozenset(
    {
        "StagingFailed",
        "SourceUnavailable",
        "SourceUnreachable",
        "UnsafeArchive",
        "FormatMismatch",
        "CorruptModel",
        "EntrypointFailed",
        "ExportFailed",
        "OptimizationFailed",
        "ParityCheckFailed",
        "DestinationUnavailable",
        "InputMismatch",
        "LabelsMismatch",
        "InvalidSpec",
        "InvalidStagingResult",
    }
)
"""Every reason ``modeldeploy stage`` reports (its ``StagingError`` classes, and InvalidSpec
for a spec it cannot read; a test keeps them equal). Any other reason in a summary is refused, so a forged one cannot break the
status schema."""

KEY_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?-[0-9a-f]{20}$"


class ParitySummary(BaseModel):
    """The parity numbers of a summary, each bounded."""

    model_config = ConfigDict(extra="ignore")

    maxAbsDiff: Annotated[float, Field(ge=0, le=1e30)] | None = None  # noqa: N815 (wire names)
    maxRelDiff: Annotated[float, Field(ge=0, le=1e30)] | None = None  # noqa: N815
    top1Agreement: Annotated[float, Field(ge=0, le=1)] | None = None  # noqa: N815
    samples: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    passed: bool | None = None


class StagingSummary(BaseModel):
    """A successful staging summary, as the operator accepts it: every field typed and bounded."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["Succeeded"]
    uri: Annotated[str, Field(max_length=2048)]
    key: Annotated[str, Field(pattern=KEY_PATTERN, max_length=128)]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    precision: Precision
    sizeBytes: Annotated[int, Field(ge=0, le=10**13)]  # noqa: N815
    cacheHit: bool = False  # noqa: N815
    parity: ParitySummary | None = None


def verified_summary(summary: dict[str, Any], name: str, store: str) -> StagingSummary | str:
    """The summary of ``name``'s staging run if it is believable, else why not: the fields are
    well-formed, the key is this ModelDeployment's, and the URI is the store's for that key
    (the URI becomes the InferenceService's storageUri)."""
    try:
        checked = StagingSummary.model_validate(summary)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "summary"
        return f"staging summary field {where}: {first['msg']}"
    if not checked.key.startswith(f"{name}-"):
        return f"staging summary key {checked.key!r} is not an artifact of {name}"
    expected = f"{store.rstrip('/')}/{checked.key}"
    if checked.uri != expected:
        return f"staging summary uri {checked.uri[:200]!r} is not the store's {expected!r}"
    return checked


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


def termination_message(pods: list[dict[str, Any]]) -> str | None:
    """The message the newest finished staging pod among ``pods`` left: its first container
    (init containers first) that failed, else its ``publish`` container's. A success is only
    ever read from ``publish``, which runs none of the tenant's code; a failure may come from
    any step, and is checked against the known reasons like any other."""
    newest = sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
    for pod in reversed(newest):
        status = pod.get("status") or {}
        finished = [
            (s.get("name"), (s.get("state") or {}).get("terminated") or {})
            for s in [*(status.get("initContainerStatuses") or []),
                      *(status.get("containerStatuses") or [])]
        ]  # fmt: skip
        failed = [t for _, t in finished if t and t.get("exitCode") not in (0, None)]
        chosen = failed[0] if failed else dict(finished).get(PUBLISH_CONTAINER) or {}
        if chosen.get("message"):
            return str(chosen["message"])
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
        reason = summary["reason"]
        if reason not in FAILURE_REASONS:
            return StagingOutcome(
                "Failed", INVALID, f"staging reported an unknown reason {str(reason)[:64]!r}"
            )
        return StagingOutcome("Failed", reason, str(summary.get("message", ""))[:2000], summary)
    failed = _condition(job, "Failed") or {}
    reason = str(failed.get("reason") or "StagingJobFailed")
    text = f"Job {job['metadata']['name']} failed: {failed.get('message') or reason}"
    if message:
        text += f"; last output: {message[-1000:]}"
    return StagingOutcome("Failed", reason, text)
