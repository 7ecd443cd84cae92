"""What the staging steps hand each other, typed.

A staging Job runs three containers (docs/security.md, "The staging pod"):

1. ``fetch`` (our code only): fetches the source, labels and calibration samples, computes the
   content key from the source's own bytes, and looks for a verified artifact at that key. It
   writes a :class:`StagingPlan` beside what it fetched, on a volume the next step can only read.
2. ``stage`` (runs the tenant's pickle and entrypoint): on a cache miss, builds the artifact
   from the plan into a per-run folder. It has no store, no credentials and no claims.
3. ``publish`` (our code only): verifies what ``stage`` left against the plan and the spec, then
   publishes it under the namespace's prefix and writes the :class:`StageResult` the operator
   reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modeldeploy.artifacts.manifest import RelativePath
from modeldeploy.staging.errors import StagingError, UntrustedArtifactError

PLAN = "plan.json"
PLAN_MAX_BYTES = 4 * 1024 * 1024


class StagingPlan(BaseModel):
    """What ``fetch`` found: the artifact's key, where the inputs are, and whether a verified
    artifact already exists (then ``stage`` does nothing and ``publish`` only records it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Annotated[str, Field(max_length=253)]
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    source: RelativePath
    """The fetched model, relative to the inputs folder."""
    labels: list[str] | None = None
    calibration: RelativePath | None = None
    reference: RelativePath | None = None
    """The fetched ``spec.monitoring.reference`` data, relative to the inputs folder."""
    cache_hit: bool = False

    def write(self, inputs: Path) -> None:
        (inputs / PLAN).write_text(self.model_dump_json(indent=1))

    @classmethod
    def read(cls, inputs: Path) -> StagingPlan:
        try:
            with (inputs / PLAN).open("rb") as f:
                data = f.read(PLAN_MAX_BYTES + 1)
            return cls.model_validate_json(data)
        except (OSError, ValidationError) as err:
            raise UntrustedArtifactError(f"no staging plan in {inputs}: {err}") from err


@dataclass(frozen=True)
class StageResult:
    """What the operator needs to know about the artifact; the summary printed as JSON."""

    uri: str
    key: str
    digest: str
    precision: str
    size_bytes: int
    cache_hit: bool
    parity: dict[str, Any] | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "Succeeded",
            "uri": self.uri,
            "key": self.key,
            "digest": self.digest,
            "precision": self.precision,
            "sizeBytes": self.size_bytes,
            "cacheHit": self.cache_hit,
            "parity": self.parity,
            "seconds": round(self.seconds, 2),
        }


TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LIMIT = 4000


def summary_for_error(err: StagingError) -> dict[str, Any]:
    return {
        "status": "Failed",
        "reason": err.reason,
        "message": str(err),
        "exitCode": err.exit_code,
    }


def write_termination_log(summary: dict[str, Any], path: Path = TERMINATION_LOG) -> None:
    """The summary, under Kubernetes' 4 KB limit, where the kubelet reads it (if it exists)."""
    if not path.exists():
        return
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT:
        excess = len(text.encode()) - TERMINATION_LIMIT + 20
        message = str(summary.get("message", ""))
        summary = {**summary, "message": message[: max(0, len(message) - excess)] + " …(truncated)"}
        text = json.dumps(summary, separators=(",", ":"))
    path.write_text(text)
