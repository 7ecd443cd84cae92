"""The reconcile engine: read the world for one ModelDeployment, ask ``reconcile.plan``, carry
the plan out; requeue a rollout's next look, retry transient API errors, resync every object
now and then, post Events, release a deleted deployment's artifacts.

Every path to a write goes through ``converge``, which only the leader runs, and only a worker
of the work queue calls: events, the resync and a rollout's next look all queue the object
(``work_queue.py``), which never hands one object to two workers at once. The objects it
creates have deterministic names, so repeated runs cannot create anything twice. No decision is made here: what to
write is ``plan``'s (and ``rejected_status``'s), this module only does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from modeldeploy.api.artifact import staging_hash
from modeldeploy.api.mirror import config_map_name
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.serving import DeploymentMode
from modeldeploy.api.status import ModelDeploymentStatus
from modeldeploy.controller import drift as drift_report
from modeldeploy.controller import metrics, naming, rollout
from modeldeploy.controller.bodies import Bodies, Owned
from modeldeploy.controller.conditions import Transition
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.job_state import (
    StagingOutcome,
    job_phase,
    staging_outcome,
    termination_message,
)
from modeldeploy.controller.kube import ConflictError, Kube, TransientApiError
from modeldeploy.controller.leader import LeaderElection
from modeldeploy.controller.reconcile import Observed, Plan, parse, plan, rejected_status
from modeldeploy.controller.runtime_index import RuntimeIndex
from modeldeploy.controller.runtimes import Blocker, resolve_runtime
from modeldeploy.controller.serving_state import (
    canary_entry,
    canary_slot_of,
    condition,
    predictor_slot,
    settled,
)
from modeldeploy.controller.staging_job import build_cleanup_job
from modeldeploy.controller.status_patch import merge_patch


class State:
    """What the watches, the workers, the resync and the requeues share."""

    def __init__(
        self, config: OperatorConfig, kube: Kube, namespaces: list[str] | None = None
    ) -> None:
        self.config = config
        self.kube = kube
        self.namespaces = namespaces
        """The namespaces the operator watches; None for all."""
        self.runtimes = RuntimeIndex()
        """The runtimes as their watches last delivered them."""
        self.posting: set[asyncio.Task[None]] = set()
        """Events being posted (kept referenced until done)."""
        self.election: LeaderElection | None = None
        """With more than one replica: the Lease this replica must hold to write anything."""
        self.elected = asyncio.Event()
        """Set when this replica becomes the leader: the resync then runs at once."""
        self.drift: dict[tuple[str, str, str], Any] = {}
        """Every revision's drift gauges, read once per resync (``controller/drift.py``)."""
        self.prometheus: dict[str, Any] = {}
        """A client per Prometheus address queried (``prometheus_client.Prometheus``)."""
        self.staging_policies: set[str] = set()
        """Namespaces whose staging NetworkPolicy this operator has made or found."""
        self.own_writes: dict[tuple[str, str], str] = {}
        """The resourceVersion our finalizer patch produced, per object. That patch was made
        on exactly the object the reconciliation read (a precondition says so), which then
        went on with it, so its event has nothing new and costs no second reconcile."""
        self.bodies = Bodies()
        """The ModelDeployments as last seen (``controller/bodies.py``): a reconciliation
        starts from here rather than from a GET."""
        self.isvcs = Bodies(keep_manager=naming.FIELD_MANAGER)
        """The InferenceServices we own as last seen, from the watch and our applies' answers
        (``controller/bodies.py``): a reconciliation reads them from here, not with a GET."""
        self.routes = Bodies()
        """Our HTTPRoutes as our last apply answered or the resync last listed them: nobody else
        writes their spec (the gateway writes only their status, which is not read), so a GET on
        every reconciliation in Standard mode returned what memory already held."""
        self.isvc_names: set[tuple[str, str]] | None = None
        """Every InferenceService in the watched namespaces, ours or another's, by (namespace,
        name), once a watch fills it: a name not among them needs no GET to be found missing.
        None (a GET per look) without a watch."""
        self.route_names: set[tuple[str, str]] | None = None
        """Every HTTPRoute in the watched namespaces, by (namespace, name), as ``isvc_names``."""
        self.staging_jobs: Owned | None = None
        """Each ModelDeployment's staging Jobs as the Job watch delivered them
        (``handlers.on_staging_job``), once a watch fills it; None (a listing per look) without
        one."""
        self.isvc_seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        """The last InferenceService state acted on, so that events that change nothing we
        read (our own apply coming back, KServe touching other fields) cost no reconcile."""


def leading(state: State) -> bool:
    """Whether this replica may write: it runs alone, or holds the Lease."""
    return state.election is None or state.election.leading()


async def _inference_service(
    state: State, namespace: str, name: str, fresh: bool
) -> dict[str, Any] | None:
    """The InferenceService as the watch last delivered it, when that is settled; None when the
    watch, which sees every InferenceService in the namespace, has none by that name; else, or
    when ``fresh``, from the API server."""
    if not fresh and state.isvc_names is not None and (namespace, name) not in state.isvc_names:
        # Before the first apply, and once more when staging ends: two GETs answered 404 per
        # deployment. Another's made under our name since is in the watch's names by the time
        # its event is handled; one made in the moment between that and our apply is the same
        # race a GET had.
        return None
    held = None if fresh else state.isvcs.get(namespace, name)
    if held is not None and settled(held):
        return held
    # One still on its way to Ready changes soon, and its next status may wait in the work queue
    # behind this reconciliation (which an earlier event woke): from memory, the status would
    # report a state KServe has already left, and take one more write to correct.
    isvc = await state.kube.inference_service(namespace, name)
    if isvc is not None and naming.managed(isvc):
        state.isvcs.put(isvc)
    else:  # only ours are held; another's is read again until its name is free
        state.isvcs.forget(namespace, name)
    return isvc


async def _route(
    state: State, namespace: str, name: str, owner_uid: str | None, fresh: bool
) -> dict[str, Any] | None:
    """Our HTTPRoute from memory (``State.routes``) when it is held for this very ModelDeployment;
    None when the watch of every route in the namespace has none by that name; else, or when
    ``fresh``, from the API server."""
    if not fresh and state.route_names is not None and (namespace, name) not in state.route_names:
        return None  # as for an InferenceService (``_inference_service``)
    held = None if fresh else state.routes.get(namespace, name)
    # A route held for an earlier ModelDeployment of the same name (deleted and made again
    # within a resync) is its garbage, not this one's route.
    if held is not None and naming.owned_by(held, owner_uid):
        return held
    route = await state.kube.http_route(namespace, name)
    if route is not None and naming.managed(route):
        state.routes.put(route)
    else:  # no route, or another's under our name: read again until ours is applied
        state.routes.forget(namespace, name)
    return route


async def _staging_jobs(state: State, namespace: str, name: str) -> list[dict[str, Any]]:
    """The deployment's staging Jobs: from the Job watch's memory where one runs, else listed.
    A Job created since the watch last delivered is there too (our create's answer); one
    created by an earlier operator is there from the watch's listing, made before any look."""
    if state.staging_jobs is not None:
        return state.staging_jobs.of((namespace, name))
    return await state.kube.jobs(namespace, name, naming.STAGING)


async def observe(state: State, body: dict[str, Any], fresh: bool = False) -> Observed:
    """What one reconciliation decides from; ``fresh`` reads the InferenceServices from the API
    server instead of memory."""
    kube, config = state.kube, state.config
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    runtime: Any
    outcome: StagingOutcome | None = None
    deployment: ModelDeployment | None
    invalid = None
    try:
        deployment = parse(body)
    except ValidationError as err:
        runtime = Blocker("InvalidSpec", "spec does not parse")
        deployment, invalid = None, str(err)
    if deployment is not None:
        wanted = deployment.spec.serving.runtime
        runtime = resolve_runtime(
            deployment,
            state.runtimes.get(namespace, wanted),
            state.runtimes.get(None, wanted),
            config,
        )
    secret = config.artifact_store_secret
    missing = secret if secret and not await kube.secret_exists(namespace, secret) else None
    status = ModelDeploymentStatus.read(body)
    recorded = status.artifact.staging_hash if status.artifact else None
    digest = (
        staging_hash(deployment, config.tenant_store(namespace)) if deployment is not None else None
    )
    # The staging Jobs matter until the current spec's artifact is recorded; after that, the
    # finished ones are the TTL controller's, and listing them on every reconcile is waste.
    jobs = (
        await _staging_jobs(state, namespace, name) if digest is None or recorded != digest else []
    )
    if digest is not None:
        current = naming.staging_job_name(name, digest)
        for job in jobs:
            # A result already in the status is not read again: the finished Job stays until
            # its TTL, and its pods need no listing on every later reconcile.
            if job["metadata"]["name"] == current and recorded != digest:
                message = None
                if job_phase(job) != "Running":
                    pods = await kube.job_pods(namespace, current)
                    message = termination_message(pods)
                outcome = staging_outcome(job, message)
    isvc = await _inference_service(state, namespace, name, fresh)
    canary = route = None
    standard = (
        deployment is not None
        and deployment.spec.serving.deployment_mode == DeploymentMode.STANDARD
    )
    native = standard and state.config.native_canary
    if standard and (status.rollout or (status.revisions and status.revisions.canary)):
        # Only a rollout creates it; a deployment that never had one costs no extra read.
        canary = await _inference_service(state, namespace, naming.canary_name(name), fresh)
    if standard:
        # Read, not written blind: an unchanged route is not applied again (``plan``), and one
        # under our name that another owns is reported, never taken over. While a canary's pods
        # exist the gateways' status on it gates their removal (``rollout.scale_down_wait``):
        # memory holds our apply's answer, not what a gateway wrote since, so it is read.
        live_status = canary is not None or canary_entry(isvc) is not None
        route = await _route(
            state, namespace, naming.route_name(name), meta.get("uid"), fresh or live_status
        )
    shadow_config_map = None
    if (
        status.rollout
        and deployment is not None
        and (deployment.spec.rollout.shadow is not None or status.rollout.shadow)
    ):  # read before it is first written: someone else's under that name is never taken over
        shadow_config_map = await kube.config_map_metadata(namespace, config_map_name(name))
    predictor = canary_predictor = None
    if standard and status.rollout and status.rollout.phase == rollout.PROMOTING:
        # Stable's predictor Deployment: KServe >= 0.20 names it after stable's predictor.name.
        slot = predictor_slot(isvc) if native else ""
        predictor = await kube.deployment(namespace, naming.predictor_service(name, slot))
    if native and canary_entry(isvc) is not None:
        entry_deployment = naming.predictor_service(name, canary_slot_of(isvc))
        canary_predictor = await kube.deployment(namespace, entry_deployment)
    reading = drift_report.reading_for(state.drift, namespace, name, status)
    return Observed(
        body, runtime, missing, jobs, outcome, isvc, canary, route, predictor=predictor,
        canary_predictor=canary_predictor,
        drift=reading, shadow_config_map=shadow_config_map, deployment=deployment,
        invalid=invalid, status=status, staging_hash=digest,
    )  # fmt: skip


async def plan_with_analysis(state: State, observed: Observed) -> Plan:
    """Plan; when the plan asks for an analysis, run it and plan again with its numbers."""
    decided = plan(observed, state.config, datetime.now(UTC))
    target = decided.analysis
    if target is None:
        return decided
    # Imported here: numpy and tritonclient cost memory in every operator, and only a rollout
    # in progress needs them.
    from modeldeploy.controller.analysis import run_checks

    assert observed.deployment is not None  # a plan that asks for an analysis parsed it
    spec = observed.deployment.spec.rollout.analysis
    address = spec.prometheus.address if spec.prometheus else state.config.prometheus_address
    prometheus = _prometheus(state, address) if address else None
    with metrics.ANALYSIS_SECONDS.time():
        result = await asyncio.to_thread(
            run_checks,
            spec,
            target,
            prometheus,
            state.config.analysis_timeout_seconds,
            datetime.now(UTC),
        )
    metrics.ANALYSES.labels(str(result.passed).lower()).inc()
    return plan(dataclasses.replace(observed, analysis=result), state.config, datetime.now(UTC))


def _prometheus(state: State, address: str) -> Any:
    """The client for ``address``, with the operator's credentials, TLS and headers."""
    from modeldeploy.controller.prometheus_client import PrometheusAuth, PrometheusClient

    if address not in state.prometheus:
        auth = PrometheusAuth.from_config(state.config)
        state.prometheus[address] = PrometheusClient(address, auth)
    return state.prometheus[address]


async def converge(
    state: State,
    namespace: str,
    name: str,
    logger: logging.Logger | Any,
    *,
    fresh: bool = False,
) -> float | None:
    """Make the world match one ModelDeployment; in how many seconds to look again, when a
    rollout needs it (its step clock, its analysis interval). Safe to call any time, any number
    of times, never twice at once for one object. Only the leader does: every event, resync and
    requeue comes through here. ``fresh`` reads the ModelDeployment from the API server rather
    than from what the watch last delivered."""
    if not leading(state):
        return None
    with metrics.RECONCILE_SECONDS.time():
        try:
            requeue = await _reconcile(state, namespace, name, logger, fresh)
        except ConflictError:
            # Memory was behind the API server: nothing was written from the stale view but
            # what came before the refused write (each of those is applied again, as the plan
            # from the fresh read says).
            requeue = await _reconcile(state, namespace, name, logger, True)
    metrics.RECONCILIATIONS.labels("ok").inc()
    return requeue


async def _read(state: State, namespace: str, name: str, fresh: bool) -> dict[str, Any] | None:
    """The ModelDeployment as last seen, or from the API server when none is held or ``fresh``."""
    body = None if fresh else state.bodies.get(namespace, name)
    if body is None:
        body = await state.kube.modeldeployment(namespace, name)
        if body is None:
            state.bodies.forget(namespace, name)
            return None
        state.bodies.put(body)
    return body


def _written(state: State, body: dict[str, Any]) -> dict[str, Any]:
    """A write's answer is the object's newest state: remembered, and what the rest of the
    reconciliation goes on with (its resourceVersion is the next write's precondition)."""
    state.bodies.put(body)
    return body


async def _reconcile(
    state: State,
    namespace: str,
    name: str,
    logger: logging.Logger | Any,
    fresh: bool,
) -> float | None:
    """One reconciliation; when to look again, if a rollout needs it."""
    kube = state.kube
    body = await _read(state, namespace, name, fresh)
    if body is None:
        return None
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        return await _release_artifacts(state, body, logger)
    if naming.FINALIZER not in finalizers:
        # Before anything reaches the store: the artifacts are released when it is deleted.
        body = _written(state, await kube.set_finalizers(
            namespace, name, [*finalizers, naming.FINALIZER], meta["resourceVersion"]
        ))  # fmt: skip
        state.own_writes[(namespace, name)] = body["metadata"]["resourceVersion"]
    observed = await observe(state, body, fresh)
    decided = await plan_with_analysis(state, observed)
    if decided.create_network_policy is not None and namespace not in state.staging_policies:
        # Once per namespace (one policy for all its staging pods), before the first Job.
        await kube.create_network_policy(decided.create_network_policy)
        state.staging_policies.add(namespace)
    if decided.create_job is not None:
        created = await kube.create_job(decided.create_job)
        if created is not None:
            logger.info(f"created staging Job {created['metadata']['name']}")
            if state.staging_jobs is not None:
                state.staging_jobs.put((namespace, name), created)
    applies = [
        (decided.apply_canary, "inferenceservices"),
        (decided.apply_isvc, "inferenceservices"),
        (decided.apply_route, "httproutes"),
    ]
    for obj, plural in applies:
        if obj is None:
            continue
        try:
            applied = await kube.apply(obj, plural)
        except ApiException as err:
            if err.status not in (400, 403, 404, 422):
                raise
            await _report_rejected(state, body, decided, obj, err)
            return None
        if plural == "inferenceservices":
            state.isvc_seen[(namespace, obj["metadata"]["name"])] = isvc_signature(applied)
            state.isvcs.put(applied)
            if state.isvc_names is not None:
                state.isvc_names.add((namespace, obj["metadata"]["name"]))
        elif plural == "httproutes":
            state.routes.put(applied)
            if state.route_names is not None:
                state.route_names.add((namespace, obj["metadata"]["name"]))
    if decided.apply_shadow is not None:
        try:
            await kube.apply(decided.apply_shadow, "configmaps")
        except ApiException as err:
            if err.status not in (400, 403, 404, 422):
                raise
            await _report_rejected(state, body, decided, decided.apply_shadow, err)
            return None
    if decided.delete_canary:
        await kube.delete_inference_service(namespace, naming.canary_name(name))
        state.isvcs.forget(namespace, naming.canary_name(name))
    if decided.status_changed:
        patch = merge_patch(body.get("status") or {}, decided.status.wire())
        _written(state, await kube.patch_status(
            namespace, name, patch, body["metadata"]["resourceVersion"]
        ))  # fmt: skip
    if decided.clear_annotations:
        _written(state, await kube.remove_annotations(namespace, name, decided.clear_annotations))
    _post_soon(state, body, decided.events)
    for job in decided.delete_jobs:
        await kube.delete_job(namespace, job)
    for event in decided.events:
        if event.reason in metrics.ENDINGS:
            metrics.ROLLOUTS.labels(metrics.ENDINGS[event.reason]).inc()
    return decided.requeue_after


async def _report_rejected(
    state: State, body: dict[str, Any], decided: Plan, obj: dict[str, Any], err: ApiException
) -> None:
    """The API server (KServe's or the Gateway API's schema, an admission webhook, a missing
    CRD, RBAC) refused an object we apply: say so in the status (``rejected_status``)."""
    meta = body["metadata"]
    status, events = rejected_status(
        body, decided.status, obj, f"{err.status} {err.body or err.reason}", datetime.now(UTC)
    )
    patch = merge_patch(body.get("status") or {}, status.wire())
    if patch:  # the same refusal again, as stored: nothing to write
        _written(state, await state.kube.patch_status(
            meta["namespace"], meta["name"], patch, meta["resourceVersion"]
        ))  # fmt: skip
    _post_soon(state, body, events)


def _post_soon(state: State, body: dict[str, Any], events: list[Transition]) -> None:
    """Post in the background: a reconciliation does not wait for its Events."""
    if not events:
        return
    task = asyncio.create_task(_post(state.kube, body, events))
    state.posting.add(task)
    task.add_done_callback(state.posting.discard)


async def _post(kube: Kube, body: dict[str, Any], events: list[Transition]) -> None:
    """Condition transitions and rollout steps as Kubernetes Events on the ModelDeployment.

    Posted in the background, so that a reconciliation never waits on them."""
    for event in events:
        try:
            await kube.post_event(body, event.type, event.reason, event.message)
        except Exception as err:  # an Event is a courtesy; the status has the same facts
            logging.getLogger(__name__).warning(f"cannot post Event {event.reason}: {err}")


def isvc_signature(isvc: dict[str, Any]) -> tuple[Any, ...]:
    """What of an InferenceService the ModelDeployment's status depends on."""
    status = isvc.get("status") or {}
    ready, latest = condition(isvc, "Ready"), condition(isvc, "LatestDeploymentReady")
    predictor = (status.get("components") or {}).get("predictor") or {}
    return (
        isvc.get("metadata", {}).get("generation"),
        status.get("observedGeneration"),
        status.get("url"),
        ready.get("status"),
        ready.get("reason"),
        ready.get("message"),
        latest.get("status"),
        predictor.get("latestReadyRevision"),
        predictor.get("latestCreatedRevision"),
        tuple(
            (t.get("revisionName"), t.get("percent"), t.get("tag"))
            for t in predictor.get("traffic") or []
        ),
        # KServe >= 0.20: a spec.canary entry becoming ready, or its share read back.
        tuple(
            (c.get("name"), c.get("ready"), c.get("trafficPercent"))
            for c in status.get("canaryStatuses") or []
        ),
    )


async def converge_or_schedule(
    state: State, namespace: str, name: str, logger: Any
) -> float | None:
    """``converge`` now; on a transient API error, again after a random wait that doubles up to
    30 seconds, seven tries in all (the resync is a minute away). The jitter keeps a thousand
    deployments that failed together (an API server restart) from all coming back in the same
    second. When to look again, as ``converge`` says; None once it gives up."""

    def counted(retry: RetryCallState) -> None:
        metrics.RECONCILIATIONS.labels("transient_error").inc()
        wait = retry.next_action.sleep if retry.next_action else 0
        logger.info(
            f"retrying in {wait:.1f}s: {retry.outcome.exception() if retry.outcome else ''}"
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientApiError),
        wait=wait_random_exponential(multiplier=1, max=30),
        stop=stop_after_attempt(7),
        before_sleep=counted,
        sleep=lambda seconds: asyncio.sleep(seconds),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await converge(state, namespace, name, logger)
    except TransientApiError as err:
        metrics.RECONCILIATIONS.labels("transient_error").inc()
        logger.warning(f"giving up until the next resync: {err}")
        return None
    except Exception:  # a refused write (422), a bug: counted, then the worker logs it
        metrics.RECONCILIATIONS.labels("permanent_error").inc()
        raise
    raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover


def on_elected(state: State) -> Any:
    async def elected() -> None:
        state.elected.set()

    return elected


async def resync_forever(
    state: State, enqueue: Callable[[tuple[str, str]], None], logger: Any
) -> None:
    """Every ``resync_seconds``, and at once when elected, queue every ModelDeployment the
    watches hold, whatever events were missed or failed. Memory is what the watches delivered,
    and a watch that fails lists again by itself, so no listing is made here; the work queue
    works them off a few at a time, each at most once however many events also queued it. One
    loop for all objects: a timer per object would cost a task and its bookkeeping per object
    (measured with kopf's timers: about 50 MB per thousand)."""
    while True:
        with contextlib.suppress(TimeoutError):  # elected: resync now, events were skipped
            await asyncio.wait_for(state.elected.wait(), state.config.resync_seconds)
        state.elected.clear()
        if not leading(state):
            continue
        await _read_drift(state, logger)
        for key in state.bodies.held():
            enqueue(key)


async def _read_drift(state: State, logger: Any) -> None:
    """Every revision's drift from the operator's Prometheus, once per resync; a failed read
    keeps the last one (drift says nothing about whether Prometheus answers)."""
    address = state.config.prometheus_address
    if not address:
        return
    try:
        state.drift = await asyncio.to_thread(
            drift_report.read_all,
            _prometheus(state, address),
            state.config.analysis_timeout_seconds,
        )
    except Exception as err:
        logger.warning(f"resync: cannot read drift from Prometheus at {address}: {err}")


RELEASE_POLL_SECONDS = 1.0
"""How soon a deleted ModelDeployment's clean-up Job is looked at again."""


async def _release_artifacts(state: State, body: dict[str, Any], logger: Any) -> float | None:
    """A deleted ModelDeployment: remove the artifacts only it used (a Job, like staging: the
    operator never writes the store's artifacts itself), then its finalizer, so the API server
    deletes it; children go by owner references. Level-based like the rest: each look moves
    it on, and says when to look again."""
    kube = state.kube
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    finalizers = list(meta.get("finalizers") or [])
    if naming.FINALIZER not in finalizers:
        return None
    if ModelDeploymentStatus.read(body).artifact is not None:
        job_name = naming.cleanup_job_name(name, meta["uid"])
        job = await kube.job(namespace, job_name)
        if job is None:
            await kube.create_job(build_cleanup_job(parse(body), meta["uid"], state.config))
            return RELEASE_POLL_SECONDS
        phase = job_phase(job)
        if phase == "Running":
            return RELEASE_POLL_SECONDS
        if phase == "Failed":
            _post_soon(state, body, [Transition(
                "Warning", "ArtifactsNotReleased",
                f"Job {job_name} failed; artifacts stay in {state.config.tenant_store(namespace)}",
            )])  # fmt: skip
    finalizers.remove(naming.FINALIZER)
    _written(state, await kube.set_finalizers(
        namespace, name, finalizers, meta["resourceVersion"]
    ))  # fmt: skip
    logger.info(f"released the artifacts of {namespace}/{name}")
    return None
