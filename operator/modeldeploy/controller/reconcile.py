"""The decision at the heart of the operator: given what exists, what should change?

``plan`` is pure and level-based: it looks only at the ModelDeployment, its staging Jobs, the
InferenceService and the runtime as they are now (never at what event woke it), and returns the
objects to create, apply and delete and the status to write. Called twice on an unchanged world
it returns no changes the second time; the handlers only carry its result out.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modeldeploy.api import entrypoints
from modeldeploy.api.artifact import staging_hash
from modeldeploy.api.base import duration_seconds
from modeldeploy.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ObjectMeta
from modeldeploy.api.serving import DeploymentMode
from modeldeploy.api.status import (
    ArtifactStatus,
    ConditionType,
    ModelDeploymentStatus,
    ParityReport,
    StagingStatus,
    Traffic,
)
from modeldeploy.api.validation import query_problems
from modeldeploy.controller import drift as drift_report
from modeldeploy.controller import job_state, naming, prometheus_access, rollout, staging_retry
from modeldeploy.controller.conditions import Transition, Wanted, merge
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import (
    CanaryEntry,
    ServingRuntimeRef,
    build_inference_service,
)
from modeldeploy.controller.job_state import (
    StagingOutcome,
    StagingSummary,
    job_phase,
    verified_summary,
)
from modeldeploy.controller.route import Backends, build_http_route, route_host, route_weights
from modeldeploy.controller.runtimes import Blocker
from modeldeploy.controller.serving_state import (
    canary_entry,
    canary_slot_of,
    isvc_readiness,
    knative_serving,
    predictor_slot,
    slotted_serving,
    standard_serving,
    storage_uri,
)
from modeldeploy.controller.shadow import get_mirror_config, get_shadow_config_map
from modeldeploy.controller.staging_job import build_staging_job, build_staging_network_policy


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
    """The InferenceService named after the ModelDeployment (stable in Standard mode)."""
    canary_isvc: dict[str, Any] | None = None
    """Standard mode: the canary InferenceService, when it exists."""
    route: dict[str, Any] | None = None
    """Standard mode: the HTTPRoute, when it exists."""
    predictor: dict[str, Any] | None = None
    """Standard mode, while promoting: KServe's Deployment of the stable predictor."""
    canary_predictor: dict[str, Any] | None = None
    """KServe >= 0.20, during a rollout: KServe's Deployment of the ``spec.canary`` entry."""
    analysis: rollout.AnalysisResult | None = None
    """The analysis run for this reconciliation, when ``plan`` asked for one."""
    drift: drift_report.DriftReading | None = None
    """The stable revision's drift gauges, from the operator's last read of Prometheus."""
    shadow_config_map: dict[str, Any] | None = None
    """The shadow ConfigMap's metadata, read during a rollout of a deployment with a shadow."""
    deployment: ModelDeployment | None = None
    """The body parsed, once, by whoever observed it; None to have ``plan`` parse it."""
    invalid: str | None = None
    """Why the body does not parse, when the observer found it does not."""
    status: ModelDeploymentStatus | None = None
    """The status as stored, parsed once by whoever observed it; None to have ``plan`` parse
    it."""
    staging_hash: str | None = None
    """The staging hash of ``deployment``, when the observer computed it (it costs a dump of the
    spec); None to have ``plan`` compute it."""


@dataclass
class Plan:
    create_job: dict[str, Any] | None = None
    create_network_policy: dict[str, Any] | None = None
    """Made before the Job, so no staging pod ever runs without it."""
    apply_isvc: dict[str, Any] | None = None
    apply_canary: dict[str, Any] | None = None
    delete_canary: bool = False
    apply_route: dict[str, Any] | None = None
    apply_shadow: dict[str, Any] | None = None
    """The shadow ConfigMap, when a shadow starts or stops (controller/shadow.py)."""
    delete_jobs: list[str] = field(default_factory=list)
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    """The status to write (``wire()`` turns it into what the API server stores)."""
    status_changed: bool = False
    events: list[Transition] = field(default_factory=list)
    clear_annotations: list[str] = field(default_factory=list)
    requeue_after: float | None = None
    """Reconcile again after this many seconds (a rollout step's clock), events or not."""
    analysis: rollout.Target | None = None
    """Run an analysis against this target and plan again with its result."""


def parse(body: dict[str, Any]) -> ModelDeployment:
    """The typed ModelDeployment of an API object (status and server-set metadata left out)."""
    meta = body.get("metadata", {})
    return ModelDeployment(
        metadata=ObjectMeta(name=meta["name"], namespace=meta.get("namespace")),
        spec=ModelDeploymentSpec.model_validate(body.get("spec") or {}),
    )


def rejected_status(
    body: dict[str, Any],
    planned: ModelDeploymentStatus,
    obj: dict[str, Any],
    why: str,
    now: datetime,
) -> tuple[ModelDeploymentStatus, list[Transition]]:
    """The status to write, and its Events, when the API server refused ``obj`` (``why``: its
    status code and answer) that ``planned`` was premised on: the status as stored, with
    Deployed and Ready False, reason ``<Kind>Rejected``. The staged artifact the plan recorded
    is kept, with its ArtifactReady: staging's result stands whatever becomes of the apply, and
    is not staged again when the refusal outlasts the finished Job. Nothing the refused object
    would have carried out (revisions, traffic, a rollout's step) is recorded."""
    meta = body["metadata"]
    kind = obj.get("kind", "object")
    message = f"the API server refused {kind} {obj['metadata']['name']}: {why}"
    status = ModelDeploymentStatus.read(body)
    wanted = [
        Wanted(ConditionType.DEPLOYED, False, f"{kind}Rejected", message),
        Wanted(ConditionType.READY, False, f"{kind}Rejected", message),
    ]
    staged = next(
        (c for c in planned.conditions or [] if c.type == ConditionType.ARTIFACT_READY), None
    )
    if planned.artifact is not None and staged is not None:
        status.artifact, status.staging = planned.artifact, planned.staging
        wanted.insert(0, Wanted.of(staged, ConditionType.ARTIFACT_READY))
    status.conditions, events = merge(
        status.conditions, wanted, int(meta.get("generation") or 0), now
    )
    return status, events


def applied(live: Any, wanted: Any) -> bool:
    """Whether applying ``wanted`` (server-side, as the operator's field manager) would change
    nothing on ``live``, so that it need not be sent: ``live`` holds every field of ``wanted``
    with the same value (maps by key, lists whole), and ``wanted`` drops none of the fields the
    operator's last apply set (which the apply would remove, e.g. ``canaryTrafficPercent`` at a
    promotion), as ``live``'s managedFields record them. Fields others added (KServe's
    defaults, status) do not matter; one of ours that a webhook changed does."""
    if wanted is None or live is None:
        return live is None and wanted is None
    owned = next(
        (m.get("fieldsV1") for m in (live.get("metadata") or {}).get("managedFields") or []
         if m.get("manager") == naming.FIELD_MANAGER and m.get("operation") == "Apply"),
        None,
    )  # fmt: skip
    return _holds(live, wanted) and not _dropped(owned or {}, wanted)


def _holds(live: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            _holds(live.get(k), v) for k, v in wanted.items() if k != "status"
        )
    return bool(live == wanted)


def _dropped(owned: dict[str, Any], wanted: Any) -> bool:
    """Whether a field in ``owned`` (a managedFields ``fieldsV1`` tree: ``f:<name>`` per map
    key) is missing from ``wanted``. Lists are compared whole by ``_holds``, so their items
    (``k:``, ``v:``, ``i:`` keys) are not walked."""
    for key, below in owned.items():
        if not key.startswith("f:"):
            continue
        name = key[2:]
        if not isinstance(wanted, dict) or name not in wanted:
            return True
        if (
            isinstance(below, dict)
            and isinstance(wanted[name], dict)
            and _dropped(below, wanted[name])
        ):
            return True
    return False


def foreign_owner(obj: dict[str, Any] | None, uid: str) -> str | None:
    """Who owns ``obj``, when it exists and our ModelDeployment (``uid``) does not."""
    if obj is None:
        return None
    if naming.owned_by(obj, uid):
        return None
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    owner = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    return f"{owner.get('kind')} {owner.get('name')}" if owner else "no owner (made by hand?)"


def name_conflicts(observed: Observed, uid: str) -> list[str]:
    """Objects under the names we use that belong to someone else, with their owners."""
    found = []
    for kind, obj in (
        ("InferenceService", observed.isvc),
        ("InferenceService", observed.canary_isvc),
        ("HTTPRoute", observed.route),
        ("ConfigMap", observed.shadow_config_map),
    ):
        owner = foreign_owner(obj, uid)
        if owner is not None and obj is not None:  # the second half is for mypy
            meta = obj.get("metadata", {})
            found.append(f"{kind} {meta.get('namespace')}/{meta.get('name')} belongs to {owner}")
    return found


def local_sources(spec: ModelDeploymentSpec) -> list[str]:
    """The fields of ``spec`` that name a ``file://`` source: fine for ``modeldeploy stage`` on a
    laptop, refused in a cluster."""
    post = spec.model.postprocessing
    quantization = spec.optimization.quantization
    uris = {
        "spec.model.uri": spec.model.uri,
        "spec.model.postprocessing.classification.labelsUri": (
            post.classification.labels_uri if post and post.classification else None
        ),
        "spec.model.postprocessing.detection.labelsUri": (
            post.detection.labels_uri if post and post.detection else None
        ),
        "spec.optimization.quantization.calibration.uri": (
            quantization.calibration.uri if quantization and quantization.calibration else None
        ),
    }
    return [field for field, uri in uris.items() if uri and uri.startswith("file://")]


def _artifact_status(summary: StagingSummary, digest: str) -> ArtifactStatus:
    parity = None
    if summary.parity is not None:
        # The summary's wire names are the status's; a report missing a number is not kept.
        with contextlib.suppress(ValidationError):
            parity = ParityReport.model_validate(summary.parity.model_dump(exclude_none=True))
    return ArtifactStatus(
        uri=summary.uri,
        key=summary.key,
        staging_hash=digest,
        digest=summary.digest,
        precision=summary.precision.value,
        size_bytes=summary.sizeBytes,
        cache_hit=summary.cacheHit,
        parity=parity,
    )


def plan(observed: Observed, config: OperatorConfig, now: datetime) -> Plan:
    body = observed.body
    meta = body["metadata"]
    generation = int(meta.get("generation") or 0)
    stored = observed.status if observed.status is not None else ModelDeploymentStatus.read(body)
    status = ModelDeploymentStatus.read(
        body
    )  # a copy to change: a parse costs a third of a deep copy
    status.observed_generation = generation
    result = Plan()
    wanted: list[Wanted] = []
    conflicts = name_conflicts(observed, str(meta.get("uid", "")))
    # Someone else's InferenceService under our name is not ours to read, overwrite or delete.
    isvc = None if conflicts else observed.isvc
    serving_ok, isvc_reason, isvc_message = isvc_readiness(isvc)
    if isvc is not None and (isvc.get("status") or {}).get("url"):
        status.url = isvc["status"]["url"]

    def finish() -> Plan:
        # An unchanged object is not applied again: a server-side apply that changes nothing
        # still costs the API server a write's work, and every watcher an event.
        for attr, live in (("apply_isvc", observed.isvc), ("apply_canary", observed.canary_isvc),
                           ("apply_route", observed.route)):  # fmt: skip
            if applied(live, getattr(result, attr)):
                setattr(result, attr, None)
        status.conditions, events = merge(stored.conditions, wanted, generation, now)
        if serving_ok and status.traffic is None:
            status.traffic = Traffic()
        result.status = status
        # Compared as stored: the raw body, not a parse of it, is what a patch would change.
        result.status_changed = status.wire() != (body.get("status") or {})
        result.events = [*events, *result.events]
        return result

    blocker: Blocker | None
    deployment, invalid = observed.deployment, observed.invalid
    if deployment is None and invalid is None:
        try:
            deployment = parse(body)
        except ValidationError as err:
            invalid = str(err)
    if deployment is None:
        blocker = Blocker("InvalidSpec", str(invalid).replace("\n", " ")[:2000])
    else:
        blocker = observed.runtime if isinstance(observed.runtime, Blocker) else None
        if blocker is None and (queries := list(query_problems(deployment.spec))):
            blocker = Blocker("InvalidSpec", "; ".join(str(p) for p in queries)[:2000])
        if blocker is None and conflicts:
            blocker = Blocker(
                "NameConflict",
                "; ".join(conflicts) + ": ModelDeploy will not overwrite or delete another's "
                "object; rename this ModelDeployment or remove that one",
            )
        if blocker is None and (local := local_sources(deployment.spec)):
            blocker = Blocker(
                "LocalSourceRefused",
                f"{', '.join(local)}: file:// would read the staging pod's own filesystem "
                "(its /proc/self/environ holds the store's credentials); in a cluster use "
                "pvc://, s3://, gs:// or https://",
            )
        if blocker is None and (
            refused := prometheus_access.address_refusal(deployment.spec, config)
        ):
            blocker = Blocker("PrometheusNotAllowed", refused)
        if blocker is None and (
            refused := prometheus_access.query_refusal(deployment.spec, config)
        ):
            blocker = Blocker("QueryNotConfined", refused[:2000])
        entrypoint = deployment.spec.model.entrypoint
        if (
            blocker is None
            and entrypoint
            and not entrypoints.allowed(entrypoint, config.entrypoint_modules)
        ):
            blocker = Blocker(
                "EntrypointRefused", entrypoints.refusal(entrypoint, config.entrypoint_modules)
            )
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

    monitoring, drifting = drift_report.report(
        deployment.spec, observed.drift, bool(config.prometheus_address)
    )
    status.monitoring = monitoring
    if drifting is not None:
        wanted.append(drifting)

    runtime = observed.runtime
    if deployment.spec.serving.deployment_mode == DeploymentMode.STANDARD and status.url:
        # Standard mode's route (kept from the first deployment on) is what splits traffic; the
        # InferenceService's own URL reaches stable only, so clients get the route's host.
        isvc_url = status.url
        status.url = f"http://{route_host(deployment, config)}"
        if serving_ok:
            isvc_message = (
                f"serving at {status.url} through Gateway {config.gateway} "
                f"(the InferenceService alone: {isvc_url})"
            )
    assert isinstance(runtime, ServingRuntimeRef)
    store = config.tenant_store(meta["namespace"])
    digest = observed.staging_hash or staging_hash(deployment, store)
    job_name = naming.staging_job_name(deployment.metadata.name, digest)
    artifact = stored.artifact
    current = artifact is not None and artifact.staging_hash == digest
    job = next((j for j in observed.jobs if j["metadata"]["name"] == job_name), None)
    staging_failed: StagingOutcome | None = None

    if not current and job is None:
        attempt = staging_retry.attempt_to_make(stored.staging, digest)
        result.create_job = build_staging_job(deployment, meta["uid"], config, attempt)
        if config.staging_network_policy:
            result.create_network_policy = build_staging_network_policy(meta["namespace"], config)
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
            checked = verified_summary(outcome.summary, deployment.metadata.name, store)
            if isinstance(checked, str):
                staging_failed = StagingOutcome("Failed", job_state.INVALID, checked)
                wanted.append(
                    Wanted(ConditionType.ARTIFACT_READY, False, job_state.INVALID, checked)
                )
            else:
                artifact = status.artifact = _artifact_status(checked, digest)
                current = True
        else:
            staging_failed = outcome
            message = outcome.message
            assert job is not None
            retry = staging_retry.next_retry(job, outcome.reason, config)
            if retry is not None and now >= retry.at:
                # The next reconcile makes the Job again, as attempt retry.attempt.
                result.delete_jobs.append(job_name)
                status.staging = StagingStatus(staging_hash=digest, attempt=retry.attempt)
                message += f"; making attempt {retry.attempt} of {retry.of} now"
            elif retry is not None:
                result.requeue_after = (retry.at - now).total_seconds()
                message += (
                    f"; attempt {retry.attempt} of {retry.of} at "
                    f"{retry.at.isoformat(timespec='seconds')}"
                )
            wanted.append(Wanted(ConditionType.ARTIFACT_READY, False, outcome.reason, message))
    if current:
        assert artifact is not None
        status.staging = None  # no attempts left to count
        wanted.append(
            Wanted(
                ConditionType.ARTIFACT_READY,
                True,
                "CacheHit" if artifact.cache_hit else "Staged",
                f"{artifact.precision} artifact {artifact.key or artifact.uri} "
                f"({artifact.size_bytes} bytes) at {artifact.uri}",
            )
        )
    # A Job still running for a spec no longer wanted is stopped; finished Jobs are left to the
    # TTL controller (ttlSecondsAfterFinished): deleting them would be a write per staging.
    for other in observed.jobs:
        name = other["metadata"]["name"]
        if (name != job_name or current) and job_phase(other) == "Running":
            result.delete_jobs.append(name)

    decision: rollout.Decision | None = None
    if current:
        assert artifact is not None
        decision = _roll_out(
            observed, stored, deployment, artifact, digest, runtime, config, now, result
        )
        wanted.extend(decision.conditions)
        result.events.extend(decision.events)

        status.revisions, status.traffic = decision.revisions, decision.traffic
        if decision.revisions.stable == digest:
            # What serves, for the Precision column: a canary's precision is not stable's.
            status.precision = artifact.precision
        if decision.rollout is not None:
            status.rollout = decision.rollout
        wanted.append(
            Wanted(
                ConditionType.DEPLOYED,
                True,
                "InferenceServiceApplied",
                f"stable revision {decision.revisions.stable} serves "
                f"{decision.revisions.stable_uri}",
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
    elif decision is not None and (failure := _rollout_degraded(decision, digest)) is not None:
        wanted.append(Wanted(ConditionType.DEGRADED, True, *failure))
    else:
        wanted.append(Wanted(ConditionType.DEGRADED, False, "AsExpected"))
    return finish()


def _rollout_degraded(decision: rollout.Decision, digest: str) -> tuple[str, str] | None:
    """(reason, message) while the current spec's rollout has failed: stable keeps serving."""
    phase = decision.rollout.phase if decision.rollout else None
    mine = digest in (decision.revisions.failed, decision.revisions.canary)
    if not mine or phase not in (rollout.ROLLED_BACK, rollout.ABORTED, rollout.FAILED):
        return None
    reason = {
        rollout.ROLLED_BACK: "RolloutRolledBack",
        rollout.ABORTED: "RolloutAborted",
        rollout.FAILED: "RolloutFailed",
    }[phase]
    return reason, (
        f"revision {digest} gets no traffic; stable {decision.revisions.stable} serves: "
        + rollout.rollout_failure(decision.rollout)
    )


def _shadow_check(
    deployment: ModelDeployment, status: ModelDeploymentStatus, isvc: dict[str, Any] | None
) -> rollout.ShadowCheck | None:
    """What the analysis of a shadow phase needs; None while a step is analysed."""
    progress = status.rollout
    spec = deployment.spec.rollout.shadow
    if progress is None or progress.phase != rollout.SHADOWING or spec is None:
        return None
    return rollout.ShadowCheck(
        min_agreement=spec.min_agreement,
        stable_url=((isvc or {}).get("status") or {}).get("url"),
        max_evidence=spec.max_evidence,
        evidence=tuple((progress.shadow.evidence if progress.shadow else None) or ()),
    )


def _shadow_config_map(
    deployment: ModelDeployment,
    meta: dict[str, Any],
    status: ModelDeploymentStatus,
    decision: rollout.Decision,
    serving: rollout.Serving,
) -> dict[str, Any] | None:
    """The shadow ConfigMap to write when mirroring starts, moves to another candidate or stops;
    None when nothing changes (it is never rewritten only to stay the same)."""
    was = status.rollout.shadow if status.rollout else None
    now = decision.rollout.shadow if decision.rollout else None
    name, namespace, uid = meta["name"], meta["namespace"], meta["uid"]
    spec = deployment.spec.rollout.shadow
    was_active = was is not None and was.active
    starts = decision.shadow_on and (
        not was_active or was is None or now is None or was.candidate != now.candidate
    )
    if starts and spec is not None and now is not None and serving.canary_url:
        config = get_mirror_config(
            deployment, spec, str(decision.revisions.stable), now.candidate, serving.canary_url
        )
        return get_shadow_config_map(name, namespace, uid, config)
    if was_active and not decision.shadow_on:
        return get_shadow_config_map(name, namespace, uid, None)
    return None


def _roll_out(
    observed: Observed,
    status: ModelDeploymentStatus,
    deployment: ModelDeployment,
    artifact: ArtifactStatus,
    digest: str,
    runtime: ServingRuntimeRef,
    config: OperatorConfig,
    now: datetime,
    result: Plan,
) -> rollout.Decision:
    """Decide the traffic (``rollout.decide``) and build the objects that carry it."""
    meta = observed.body["metadata"]
    stored = status.revisions
    stable, stable_uri = (stored.stable, stored.stable_uri) if stored else (None, None)
    name = deployment.metadata.name
    knative = deployment.spec.serving.deployment_mode == DeploymentMode.KNATIVE
    canary_uri = artifact.uri if digest != stable else None
    revision_of = {stable_uri: stable, artifact.uri: digest}
    if knative:
        serving = knative_serving(observed.isvc, canary_uri)
    elif config.native_canary:
        serving = slotted_serving(
            observed.isvc,
            observed.route,
            (canary_uri, digest) if canary_uri else None,
            name,
            meta["namespace"],
            (observed.predictor, observed.canary_predictor),
            {k: v for k, v in revision_of.items() if k and v},
            separate_canary=observed.canary_isvc is not None,
        )
    else:
        serving = standard_serving(
            observed.isvc,
            observed.canary_isvc,
            observed.route,
            canary_uri,
            name,
            observed.predictor,
            {k: v for k, v in revision_of.items() if k and v},
        )
    inputs = rollout.Inputs(
        spec=deployment.spec.rollout,
        knative=knative,
        artifact=rollout.Artifact(digest, artifact.uri),
        status=status,
        serving=serving,
        annotations=dict(meta.get("annotations") or {}),
        now=now,
        analysis=observed.analysis,
    )
    if observed.analysis is None and rollout.analysis_due(inputs):
        period = rollout.clock(inputs)
        started = period[0] if period is not None else now
        result.analysis = rollout.Target(
            namespace=meta["namespace"],
            deployment=name,
            model=name,
            canary=digest,
            stable=str(stable),
            canary_url=serving.canary_url,
            artifact_store=config.tenant_store(meta["namespace"]),
            artifact_key=artifact.key,
            window_seconds=int(
                max(config.metrics_min_window_seconds, (now - started).total_seconds())
            ),
            runtime=deployment.spec.serving.runtime,
            knative=knative,
            shadow=_shadow_check(deployment, status, observed.isvc),
        )
    decision = rollout.decide(inputs)
    result.apply_shadow = _shadow_config_map(deployment, meta, status, decision, serving)
    result.clear_annotations = decision.clear_annotations
    result.requeue_after = decision.requeue_after
    revision_of = {
        decision.revisions.stable_uri: decision.revisions.stable,
        artifact.uri: digest,
    }  # after the decision: a promotion makes the new artifact the stable one
    uid = meta["uid"]
    if knative:
        uri = decision.knative_uri
        result.apply_isvc = build_inference_service(
            deployment,
            uid,
            uri,
            runtime,
            revision_of.get(uri),
            decision.canary_percent,
            pull_secrets=config.image_pull_secrets,
        )
        return decision
    if config.native_canary:
        _carry_slotted(observed, deployment, decision, serving, (artifact.uri, digest), runtime,
                       config, result, now)  # fmt: skip
        return decision
    result.apply_isvc = build_inference_service(
        deployment,
        uid,
        decision.stable_uri,
        runtime,
        revision_of.get(decision.stable_uri),
        pull_secrets=config.image_pull_secrets,
    )
    if decision.canary_isvc:
        result.apply_canary = build_inference_service(
            deployment,
            uid,
            artifact.uri,
            runtime,
            digest,
            isvc_name=naming.canary_name(name),
            role=naming.CANARY,
            pull_secrets=config.image_pull_secrets,
        )
    elif observed.canary_isvc is not None:  # rolled back, aborted or promoted
        wait = _scale_down_wait(decision, deployment, config, now)
        _delete_separate_canary(result, serving.weights[1], wait)
    if decision.route:
        result.apply_route = build_http_route(
            deployment, uid, config, decision.canary_weight, decision.canary_isvc
        )
    return decision


def _scale_down_wait(
    decision: rollout.Decision, deployment: ModelDeployment, config: OperatorConfig, now: datetime
) -> float | None:
    """``rollout.scale_down_wait`` with the rollout's own delay, or the operator's."""
    own = deployment.spec.rollout.scale_down_delay
    delay = duration_seconds(own) if own is not None else config.scale_down_delay_seconds
    return rollout.scale_down_wait(decision.traffic, now, delay)


def _sooner(requeue: float | None, wait: float | None) -> float:
    """The next look: when the scale-down delay ends, or in a second while a gateway has not
    yet accepted the route (or the route has not read back yet), whichever comes first."""
    due = wait if wait else 1.0
    return min(requeue, due) if requeue else due


def _delete_separate_canary(result: Plan, canary_weight: int, wait: float | None) -> None:
    """``<name>-canary`` is deleted once the route reads back nothing for it and the gateways
    have served that for the scale-down delay; until then it stays, and the operator looks
    again."""
    if canary_weight == 0 and wait == 0:
        result.delete_canary = True
    else:
        result.requeue_after = _sooner(result.requeue_after, wait)


def _carry_slotted(
    observed: Observed,
    deployment: ModelDeployment,
    decision: rollout.Decision,
    serving: rollout.Serving,
    candidate: tuple[str, str],
    runtime: ServingRuntimeRef,
    config: OperatorConfig,
    result: Plan,
    now: datetime,
) -> None:
    """KServe >= 0.20: the decision as one InferenceService with the canary in ``spec.canary``,
    and our route between the two predictors' Services. ``candidate`` is the staged artifact
    (uri, revision).

    The route moves first, KServe second: a canary entry is removed (rollback), and stable
    renamed to the canary's slot (promotion), only once the route as read back gives the pods
    about to go no traffic, and every gateway has served that route for the scale-down delay
    (``rollout.scale_down_wait``), so that no request is sent to a pod KServe is deleting."""
    meta = observed.body["metadata"]
    uid, name = meta["uid"], deployment.metadata.name
    live = observed.isvc
    stable_slot = predictor_slot(live)
    entry = canary_entry(live)
    slot = canary_slot_of(live)
    uri, revision = candidate
    stored = (observed.status or ModelDeploymentStatus()).revisions
    old_uri = (storage_uri(live) if live else None) or decision.stable_uri
    revision_of = {
        old_uri: stored.stable if stored else None,
        decision.revisions.stable_uri: decision.revisions.stable,
        uri: revision,
    }
    # Promoting (``rollout._promote``): the candidate is to become stable. Renamed already
    # (stable serves it; the rollout waits for its Deployment), or ready to be: both are stable
    # on the candidate's slot with no entry, never a second entry for the same artifact.
    to_promote = decision.canary_isvc and decision.stable_uri == uri
    renamed = to_promote and old_uri == uri
    # KServe's next step stops pods (stable's at the rename, the entry's at a rollback): only
    # once the gateways have served the route that sends them nothing for the scale-down
    # delay, not merely once the API server holds it.
    wait = _scale_down_wait(decision, deployment, config, now)
    drained = wait == 0
    if to_promote and not renamed and not drained:
        result.requeue_after = _sooner(result.requeue_after, wait)
    if renamed or (to_promote and serving.canary_ready and serving.weights[1] == 100 and drained):
        # KServe's promotion without a restart: stable becomes the canary's predictor, by name.
        serving_slot = stable_slot if renamed else slot
        result.apply_isvc = build_inference_service(
            deployment, uid, uri, runtime, revision, pull_secrets=config.image_pull_secrets,
            predictor_name=serving_slot,
        )  # fmt: skip
        backends = Backends.slots(name, serving_slot, naming.canary_slot(serving_slot))
        result.apply_route = build_http_route(deployment, uid, config, 0, False, backends)
        result.requeue_after = min(result.requeue_after or 1.0, 1.0)
        return
    stable_uri = old_uri if to_promote else decision.stable_uri
    canary = None
    if decision.canary_isvc:
        canary = CanaryEntry(slot, uri, revision, decision.canary_weight)
    result.apply_isvc = build_inference_service(
        deployment, uid, stable_uri, runtime, revision_of.get(stable_uri),
        pull_secrets=config.image_pull_secrets, predictor_name=stable_slot, canary=canary,
    )  # fmt: skip
    if canary is None and entry is not None and (serving.weights[1] > 0 or not drained):
        # Rolled back or abandoned: the entry goes once the route sends it nothing, KServe
        # reads its share back as 0, and the scale-down delay has passed (its pods stay as they
        # are until then).
        result.apply_isvc["spec"]["canary"] = [{**entry, "trafficPercent": 0}]
        result.requeue_after = _sooner(result.requeue_after, wait)
    result.apply_route = build_http_route(
        deployment, uid, config, decision.canary_weight, canary is not None,
        Backends.slots(name, stable_slot, slot),
    )  # fmt: skip
    if observed.canary_isvc is not None:  # left by an operator that ran before KServe 0.20
        left = (route_weights(observed.route, Backends.separate(name)) or (0, 0))[1]
        _delete_separate_canary(result, left, wait)
