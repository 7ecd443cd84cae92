"""The decision at the heart of the operator: given what exists, what should change?

``plan`` is pure and level-based: it looks only at the ModelDeployment, its staging Jobs, the
InferenceService and the runtime as they are now (never at what event woke it), and returns the
objects to create, apply and delete and the status to write. Called twice on an unchanged world
it returns no changes the second time; the handlers only carry its result out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modeldeploy.api.artifact import staging_hash
from modeldeploy.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ObjectMeta
from modeldeploy.api.status import ConditionType
from modeldeploy.controller import naming
from modeldeploy.controller.conditions import Transition, Wanted, merge
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import ServingRuntimeRef, build_inference_service
from modeldeploy.controller.job_state import StagingOutcome
from modeldeploy.controller.runtimes import Blocker
from modeldeploy.controller.staging_job import build_staging_job


@dataclass(frozen=True)
class Observed:
    """The world as the handler read it for one ModelDeployment."""

    body: dict[str, Any]
    runtime: ServingRuntimeRef | Blocker
    secret_missing: str | None
    """Name of the artifact-store Secret when it does not exist in the namespace."""
    jobs: list[dict[str, Any]]
    """This deployment's staging Jobs."""
    outcome: StagingOutcome | None
    """The current staging Job's outcome, when that Job exists."""
    isvc: dict[str, Any] | None


@dataclass
class Plan:
    create_job: dict[str, Any] | None = None
    apply_isvc: dict[str, Any] | None = None
    delete_jobs: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    status_changed: bool = False
    events: list[Transition] = field(default_factory=list)


def parse(body: dict[str, Any]) -> ModelDeployment:
    """The typed ModelDeployment of an API object (status and server-set metadata left out)."""
    meta = body.get("metadata", {})
    return ModelDeployment(
        metadata=ObjectMeta(name=meta["name"], namespace=meta.get("namespace")),
        spec=ModelDeploymentSpec.model_validate(body.get("spec") or {}),
    )


def _isvc_ready(isvc: dict[str, Any] | None) -> tuple[bool, str, str]:
    if isvc is None:
        return False, "InferenceServiceMissing", "no InferenceService yet"
    status = isvc.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return True, "InferenceServiceReady", f"serving at {status.get('url', '?')}"
            return (
                False,
                str(cond.get("reason") or "InferenceServiceNotReady"),
                str(cond.get("message") or "the InferenceService is not ready"),
            )
    return False, "InferenceServiceNotReady", "KServe has not reported readiness yet"


def _artifact_status(summary: dict[str, Any], digest: str) -> dict[str, Any]:
    artifact = {
        "uri": summary["uri"],
        "key": summary.get("key"),
        "stagingHash": digest,
        "digest": summary["digest"],
        "precision": summary["precision"],
        "sizeBytes": summary["sizeBytes"],
        "cacheHit": bool(summary.get("cacheHit")),
    }
    parity = summary.get("parity")
    if parity:
        artifact["parity"] = {
            k: parity[k]
            for k in ("maxAbsDiff", "maxRelDiff", "top1Agreement", "samples", "passed")
            if parity.get(k) is not None
        }
    return {k: v for k, v in artifact.items() if v is not None}


def plan(observed: Observed, config: OperatorConfig, now: datetime) -> Plan:
    body = observed.body
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    old_status: dict[str, Any] = dict(body.get("status") or {})
    status: dict[str, Any] = {**old_status, "observedGeneration": generation}
    result = Plan()
    wanted: list[Wanted] = []
    isvc = observed.isvc
    serving_ok, isvc_reason, isvc_message = _isvc_ready(isvc)
    if isvc is not None and (isvc.get("status") or {}).get("url"):
        status["url"] = isvc["status"]["url"]

    def finish() -> Plan:
        conditions, events = merge(old_status.get("conditions"), wanted, generation, now)
        status["conditions"] = conditions
        if serving_ok:
            status["traffic"] = {"stable": 100, "canary": 0, "split": "100/0"}
        result.status = status
        result.status_changed = status != old_status
        result.events = events
        return result

    blocker: Blocker | None
    deployment: ModelDeployment | None
    try:
        deployment = parse(body)
    except ValidationError as err:
        blocker = Blocker("InvalidSpec", str(err).replace("\n", " ")[:2000])
        deployment = None
    else:
        blocker = observed.runtime if isinstance(observed.runtime, Blocker) else None
        if blocker is None and observed.secret_missing:
            blocker = Blocker(
                "SecretNotFound",
                f"artifact store Secret {observed.secret_missing!r} does not exist in namespace "
                f"{meta.get('namespace')}; the staging Job needs it for {config.artifact_store}",
            )
    if blocker is not None or deployment is None:
        assert blocker is not None
        wanted.append(Wanted(ConditionType.READY, False, blocker.reason, blocker.message))
        wanted.append(
            Wanted(ConditionType.DEPLOYED, isvc is not None, blocker.reason, blocker.message)
        )
        wanted.append(
            Wanted(
                ConditionType.DEGRADED,
                isvc is not None,
                blocker.reason if isvc is not None else "AsExpected",
                "the InferenceService keeps its previous spec; " + blocker.message
                if isvc is not None
                else "",
            )
        )
        return finish()

    runtime = observed.runtime
    assert isinstance(runtime, ServingRuntimeRef)
    digest = staging_hash(deployment, config.artifact_store)
    job_name = naming.staging_job_name(deployment.metadata.name, digest)
    artifact = old_status.get("artifact")
    current = artifact is not None and artifact.get("stagingHash") == digest
    job = next((j for j in observed.jobs if j["metadata"]["name"] == job_name), None)
    staging_failed: StagingOutcome | None = None

    if not current and job is None:
        result.create_job = build_staging_job(deployment, meta["uid"], config)
        wanted.append(
            Wanted(ConditionType.ARTIFACT_READY, None, "StagingStarted", f"created Job {job_name}")
        )
    elif not current and observed.outcome is not None:
        outcome = observed.outcome
        if outcome.phase == "Running":
            wanted.append(
                Wanted(ConditionType.ARTIFACT_READY, None, outcome.reason, outcome.message)
            )
        elif outcome.phase == "Succeeded" and outcome.summary is not None:
            artifact = _artifact_status(outcome.summary, digest)
            status["artifact"] = artifact
            current = True
        else:
            staging_failed = outcome
            wanted.append(
                Wanted(ConditionType.ARTIFACT_READY, False, outcome.reason, outcome.message)
            )
    if current:
        assert artifact is not None
        wanted.append(
            Wanted(
                ConditionType.ARTIFACT_READY,
                True,
                "CacheHit" if artifact.get("cacheHit") else "Staged",
                f"{artifact['precision']} artifact {artifact.get('key') or artifact['uri']} "
                f"({artifact['sizeBytes']} bytes) at {artifact['uri']}",
            )
        )
    # Finished Jobs whose result is recorded, and Jobs for specs no longer wanted, go.
    for other in observed.jobs:
        name = other["metadata"]["name"]
        if name != job_name or current:
            result.delete_jobs.append(name)

    if current:
        assert artifact is not None
        result.apply_isvc = build_inference_service(
            deployment, meta["uid"], artifact["uri"], runtime
        )
        wanted.append(
            Wanted(
                ConditionType.DEPLOYED,
                True,
                "InferenceServiceApplied",
                f"InferenceService {deployment.metadata.name} serves {artifact['uri']}",
            )
        )
    elif isvc is not None:
        wanted.append(
            Wanted(
                ConditionType.DEPLOYED,
                True,
                "PreviousArtifact",
                "the InferenceService keeps serving the previous artifact until the new one is staged",
            )
        )
    else:
        wanted.append(
            Wanted(ConditionType.DEPLOYED, False, "WaitingForArtifact", "staging has not finished")
        )

    if serving_ok:
        wanted.append(Wanted(ConditionType.READY, True, isvc_reason, isvc_message))
    elif staging_failed is not None and isvc is None:
        wanted.append(
            Wanted(ConditionType.READY, False, staging_failed.reason, staging_failed.message)
        )
    else:
        wanted.append(Wanted(ConditionType.READY, False, isvc_reason, isvc_message))

    if staging_failed is not None and isvc is not None:
        wanted.append(
            Wanted(
                ConditionType.DEGRADED,
                True,
                staging_failed.reason,
                "the new spec could not be staged; the previous artifact keeps serving: "
                + staging_failed.message,
            )
        )
    else:
        wanted.append(Wanted(ConditionType.DEGRADED, False, "AsExpected"))
    return finish()
