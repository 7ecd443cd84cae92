"""kopf handlers: thin, and only I/O. Every decision is ``reconcile.plan``'s.

Any event that may change what a ModelDeployment needs (its own create/update/resume, a staging
Job or an InferenceService it owns changing, a periodic resync) leads to the same ``converge``,
which reads the world, asks ``plan`` and carries the plan out. Convergence of one object is
serialised by a lock, and the objects it creates have deterministic names, so concurrent or
repeated runs cannot create anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import kopf
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
from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION, ModelDeployment
from modeldeploy.api.serving import DeploymentMode
from modeldeploy.api.status import ConditionType
from modeldeploy.controller import drift as drift_report
from modeldeploy.controller import metrics, naming, rollout
from modeldeploy.controller.conditions import Transition, Wanted, merge
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.job_state import (
    StagingOutcome,
    job_phase,
    staging_outcome,
    termination_message,
)
from modeldeploy.controller.kube import Kube, TransientApiError
from modeldeploy.controller.leader import LeaderElection
from modeldeploy.controller.reconcile import Observed, Plan, parse, plan
from modeldeploy.controller.runtimes import Blocker, resolve_runtime
from modeldeploy.controller.staging_job import build_cleanup_job

MD = (GROUP, VERSION, PLURAL)


class _Runtimes:
    """The two runtime indices as one lookup by (namespace or None, name)."""

    def __init__(self, namespaced: Any, cluster: Any) -> None:
        self.namespaced, self.cluster = namespaced, cluster

    def get(self, key: tuple[str | None, str]) -> Any:
        return (self.cluster if key[0] is None else self.namespaced).get(key)


OWNED = {naming.MANAGED_BY: naming.MANAGER}


class State:
    """What the handlers share, kept in kopf's memo."""

    def __init__(
        self, config: OperatorConfig, kube: Kube, namespaces: list[str] | None = None
    ) -> None:
        self.config = config
        self.kube = kube
        self.namespaces = namespaces
        """The namespaces the operator watches; None for all."""
        self.runtimes: Any = None
        """The runtime indices, captured from the first handler call (kopf passes indices only
        to handlers), for the resync loop."""
        self.locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self.requeues: dict[tuple[str, str], asyncio.Task[None]] = {}
        """A rollout's next look, per object (its step clock and analysis interval)."""
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
        self.isvc_seen: dict[tuple[str, str], tuple[Any, ...]] = {}
        """The last InferenceService state acted on, so that events that change nothing we
        read (our own apply coming back, KServe touching other fields) cost no reconcile."""


def leading(state: State) -> bool:
    """Whether this replica may write: it runs alone, or holds the Lease."""
    return state.election is None or state.election.leading()


def _state(memo: Any) -> State:
    state: State = memo.state
    return state


RuntimeIndex = Any
"""kopf.Index of (namespace or None, name) → the parts of a (Cluster)ServingRuntime we read."""


def _runtime_view(body: Any) -> dict[str, Any]:
    spec = body.get("spec") or {}
    return {
        "metadata": {"annotations": dict(body.get("metadata", {}).get("annotations") or {})},
        "spec": {k: spec.get(k) for k in ("supportedModelFormats", "protocolVersions", "disabled")},
    }


def _lookup(index: RuntimeIndex, namespace: str | None, name: str) -> dict[str, Any] | None:
    found = index.get((namespace, name)) if index is not None else None
    return next(iter(found), None) if found is not None else None


async def _observe(state: State, body: dict[str, Any], runtimes: RuntimeIndex) -> Observed:
    kube, config = state.kube, state.config
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    runtime: Any
    outcome: StagingOutcome | None = None
    deployment: ModelDeployment | None
    try:
        deployment = parse(body)
    except ValidationError:
        runtime = Blocker("InvalidSpec", "spec does not parse")
        deployment = None
    if deployment is not None:
        wanted = deployment.spec.serving.runtime
        runtime = resolve_runtime(
            deployment,
            _lookup(runtimes, namespace, wanted),
            _lookup(runtimes, None, wanted),
            config,
        )
    secret = config.artifact_store_secret
    missing = secret if secret and not await kube.secret_exists(namespace, secret) else None
    jobs = await kube.jobs(namespace, name, naming.STAGING)
    if deployment is not None:
        store = config.tenant_store(namespace)
        current = naming.staging_job_name(name, staging_hash(deployment, store))
        for job in jobs:
            if job["metadata"]["name"] == current:
                message = None
                if job_phase(job) != "Running":
                    pods = await kube.job_pods(namespace, current)
                    message = termination_message(pods)
                outcome = staging_outcome(job, message)
    isvc = await kube.inference_service(namespace, name)
    canary = route = None
    status = body.get("status") or {}
    standard = (
        deployment is not None
        and deployment.spec.serving.deployment_mode == DeploymentMode.STANDARD
    )
    if standard and (status.get("rollout") or (status.get("revisions") or {}).get("canary")):
        # Only a rollout creates these; a deployment that never had one costs no extra reads.
        canary = await kube.inference_service(namespace, naming.canary_name(name))
        route = await kube.http_route(namespace, naming.route_name(name))
    shadow_config_map = None
    if (
        status.get("rollout")
        and deployment is not None
        and (deployment.spec.rollout.shadow is not None or (status["rollout"] or {}).get("shadow"))
    ):  # read before it is first written: someone else's under that name is never taken over
        shadow_config_map = await kube.config_map_metadata(namespace, config_map_name(name))
    predictor = None
    if standard and (status.get("rollout") or {}).get("phase") == rollout.PROMOTING:
        predictor = await kube.deployment(namespace, naming.predictor_service(name))
    meta = body["metadata"]
    reading = drift_report.reading_for(
        state.drift, meta["namespace"], meta["name"], body.get("status") or {}
    )
    return Observed(
        body, runtime, missing, jobs, outcome, isvc, canary, route, predictor=predictor,
        drift=reading, shadow_config_map=shadow_config_map,
    )  # fmt: skip


async def _plan_with_analysis(state: State, observed: Observed) -> Plan:
    """Plan; when the plan asks for an analysis, run it and plan again with its numbers."""
    decided = plan(observed, state.config, datetime.now(UTC))
    target = decided.analysis
    if target is None:
        return decided
    # Imported here: numpy and tritonclient cost memory in every operator, and only a rollout
    # in progress needs them.
    from modeldeploy.controller.analysis import run_checks

    spec = parse(observed.body).spec.rollout.analysis
    address = spec.prometheus.address if spec.prometheus else state.config.prometheus_address
    prometheus = _prometheus(state, address) if address else None
    with metrics.ANALYSIS_SECONDS.time():
        result = await asyncio.to_thread(
            run_checks,
            spec,
            target,
            True,  # analysis_due asked for a ready canary
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
    state: State, namespace: str, name: str, logger: logging.Logger | Any, runtimes: RuntimeIndex
) -> None:
    """Make the world match one ModelDeployment. Safe to call any time, any number of times.
    Only the leader does: every event, resync and requeue comes through here."""
    if not leading(state):
        return
    with metrics.RECONCILE_SECONDS.time():
        requeue = await _converge_locked(state, namespace, name, logger, runtimes)
    metrics.RECONCILIATIONS.labels("ok").inc()
    _requeue(state, namespace, name, requeue, logger, runtimes)


async def _converge_locked(
    state: State, namespace: str, name: str, logger: logging.Logger | Any, runtimes: RuntimeIndex
) -> float | None:
    """One reconciliation under the object's lock; when to look again, if a rollout needs it."""
    kube = state.kube
    async with state.locks[(namespace, name)]:
        body = await kube.modeldeployment(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        observed = await _observe(state, body, runtimes)
        decided = await _plan_with_analysis(state, observed)
        if decided.create_network_policy is not None:
            await kube.create_network_policy(decided.create_network_policy)
        if decided.create_job is not None and await kube.create_job(decided.create_job):
            logger.info(f"created staging Job {decided.create_job['metadata']['name']}")
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
                await _report_rejected(state, body, obj, err)
                return None
            if plural == "inferenceservices":
                state.isvc_seen[(namespace, obj["metadata"]["name"])] = _isvc_signature(applied)
        if decided.apply_shadow is not None:
            try:
                await kube.apply_config_map(decided.apply_shadow)
            except ApiException as err:
                if err.status not in (400, 403, 404, 422):
                    raise
                await _report_rejected(state, body, decided.apply_shadow, err)
                return None
        if decided.delete_canary:
            await kube.delete_inference_service(namespace, naming.canary_name(name))
        if decided.status_changed:
            await kube.patch_status(
                namespace, name, merge_patch(body.get("status") or {}, decided.status)
            )
        if decided.clear_annotations:
            await kube.remove_annotations(namespace, name, decided.clear_annotations)
        _post_soon(state, body, decided.events)
        for job in decided.delete_jobs:
            await kube.delete_job(namespace, job)
        for event in decided.events:
            if event.reason in metrics.ENDINGS:
                metrics.ROLLOUTS.labels(metrics.ENDINGS[event.reason]).inc()
    return decided.requeue_after


def _requeue(
    state: State,
    namespace: str,
    name: str,
    delay: float | None,
    logger: Any,
    runtimes: RuntimeIndex,
) -> None:
    """Converge again after ``delay`` seconds (one pending look per object; a newer one
    replaces it). The delay comes from the status, so a restarted operator schedules the same
    look on its first reconciliation."""
    key = (namespace, name)
    pending = state.requeues.pop(key, None)
    if pending is not None and pending is not asyncio.current_task():
        pending.cancel()
    if delay is None:
        return

    async def later() -> None:
        await asyncio.sleep(delay)
        if state.requeues.get(key) is asyncio.current_task():
            del state.requeues[key]
        await _converge_or_schedule(state, namespace, name, logger, runtimes)

    state.requeues[key] = asyncio.create_task(later(), name=f"requeue {namespace}/{name}")


async def _report_rejected(
    state: State, body: dict[str, Any], obj: dict[str, Any], err: ApiException
) -> None:
    """The API server (KServe's or the Gateway API's schema, an admission webhook, or a missing
    CRD) refused an object we apply."""
    meta = body["metadata"]
    kind = obj.get("kind", "object")
    message = (
        f"the API server refused {kind} {obj['metadata']['name']}: "
        f"{err.status} {err.body or err.reason}"
    )
    status = dict(body.get("status") or {})
    conditions, events = merge(
        status.get("conditions"),
        [
            Wanted(ConditionType.DEPLOYED, False, f"{kind}Rejected", message),
            Wanted(ConditionType.READY, False, f"{kind}Rejected", message),
        ],
        int(meta.get("generation") or 0),
        datetime.now(UTC),
    )
    await state.kube.patch_status(meta["namespace"], meta["name"], {"conditions": conditions})
    _post_soon(state, body, events)


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) from ``old`` to ``new``: keys ``new`` dropped become
    null, so a finished step's ``stepStartedAt`` or a promoted canary's ``revisions.canary``
    really go (a merge patch leaves absent keys as they were)."""
    patch: dict[str, Any] = dict.fromkeys(old.keys() - new.keys())
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def _post_soon(state: State, body: dict[str, Any], events: list[Transition]) -> None:
    """Post in the background: a reconciliation does not wait for its Events."""
    if not events:
        return
    task = asyncio.create_task(_post(state.kube, body, events))
    state.posting.add(task)
    task.add_done_callback(state.posting.discard)


async def _post(kube: Kube, body: dict[str, Any], events: list[Transition]) -> None:
    """Condition transitions and rollout steps as Kubernetes Events on the ModelDeployment.

    Posted through the API directly rather than with ``kopf.event``: these come from the resync
    loop and a rollout's timed looks too, outside any kopf handler, where kopf cannot post."""
    for event in events:
        try:
            await kube.post_event(body, event.type, event.reason, event.message)
        except Exception as err:  # an Event is a courtesy; the status has the same facts
            logging.getLogger(__name__).warning(f"cannot post Event {event.reason}: {err}")


def _command_pending(body: Any) -> bool:
    """A rollout command annotation not yet acted on: promote, abort or resume present, or pause set or
    cleared without the phase following."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if any(a in annotations for a in rollout.COMMANDS.values()):
        return True
    phase = ((body.get("status") or {}).get("rollout") or {}).get("phase")
    return (phase == rollout.PAUSED) != rollout.paused(annotations) and phase in (
        rollout.PROGRESSING,
        rollout.PAUSED,
    )


def _isvc_signature(isvc: dict[str, Any]) -> tuple[Any, ...]:
    """What of an InferenceService the ModelDeployment's status depends on."""
    status = isvc.get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    predictor = (status.get("components") or {}).get("predictor") or {}
    latest: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "LatestDeploymentReady"),
        {},
    )
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
    )


async def _converge_or_schedule(
    state: State, namespace: str, name: str, logger: Any, runtimes: RuntimeIndex
) -> None:
    """Converge now; on a transient API error, again after a random wait that doubles up to 30
    seconds, seven tries in all (event handlers are not retried by kopf, and the resync timer is
    minutes away). The jitter keeps a thousand deployments that failed together (an API server
    restart) from all coming back in the same second."""

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
                await converge(state, namespace, name, logger, runtimes)
    except TransientApiError as err:
        metrics.RECONCILIATIONS.labels("transient_error").inc()
        logger.warning(f"giving up until the next resync: {err}")
    except Exception:  # a refused write (422), a bug: counted, then kopf logs it
        metrics.RECONCILIATIONS.labels("permanent_error").inc()
        raise


def _on_elected(state: State) -> Any:
    async def elected() -> None:
        state.elected.set()

    return elected


async def resync_forever(state: State, logger: Any) -> None:
    """Every ``resync_seconds``, converge every ModelDeployment, whatever events were missed
    or failed. One loop for all objects, a few at a time: a kopf timer per object would cost a
    task and its bookkeeping per object (measured: about 50 MB per thousand)."""
    limit = asyncio.Semaphore(4)

    async def one(namespace: str, name: str) -> None:
        async with limit:
            try:
                await converge(state, namespace, name, logger, state.runtimes)
            except Exception as err:
                logger.warning(f"resync of {namespace}/{name} failed: {err}")

    while True:
        with contextlib.suppress(TimeoutError):  # elected: resync now, events were skipped
            await asyncio.wait_for(state.elected.wait(), state.config.resync_seconds)
        state.elected.clear()
        if state.runtimes is None or not leading(state):
            continue
        try:
            names = await state.kube.modeldeployment_names(state.namespaces)
        except Exception as err:
            logger.warning(f"resync: cannot list ModelDeployments: {err}")
            continue
        await _read_drift(state, logger)
        await asyncio.gather(*(one(ns, name) for ns, name in names))


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


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Attach every handler to ``registry`` (not kopf's global one: nothing happens at import)."""

    @kopf.on.startup(registry=registry)
    async def start_resync(memo: Any, logger: Any, **_: Any) -> None:
        memo.resync_task = asyncio.create_task(resync_forever(_state(memo), logger))

    @kopf.on.startup(registry=registry)
    async def start_election(memo: Any, **_: Any) -> None:
        state = _state(memo)
        if state.election is not None:
            memo.election_task = asyncio.create_task(state.election.run(_on_elected(state)))

    @kopf.on.cleanup(registry=registry)
    async def stop_resync(memo: Any, **_: Any) -> None:
        for attr in ("resync_task", "election_task"):
            task = getattr(memo, attr, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # the election gives the Lease up on its way out

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = naming.FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=naming.ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=naming.ANNOTATION_PREFIX, key="last-handled-spec"
        )
        # The resources are known; no cluster-wide watch on CRDs and namespaces (least privilege:
        # the Helm chart's RBAC grants none).
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        settings.posting.level = logging.INFO
        settings.queueing.error_delays = (1, 2, 5, 10, 20, 30, 60, 120, 300)
        # Bounded concurrency: a burst of a thousand objects is worked off by a fixed number of
        # workers per watched resource, instead of a thousand at once (and the memory of that).
        # A worker holds its slot until idle for this long, so keep it short.
        settings.queueing.worker_limit = config.workers
        settings.queueing.idle_timeout = 0.2

    @kopf.index(
        "serving.kserve.io",
        "v1alpha1",
        "servingruntimes",
        id="modeldeploy_runtimes",
        registry=registry,
    )
    def modeldeploy_runtimes(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, name): _runtime_view(body)}

    @kopf.index(
        "serving.kserve.io",
        "v1alpha1",
        "clusterservingruntimes",
        id="modeldeploy_cluster_runtimes",
        registry=registry,
    )
    def modeldeploy_cluster_runtimes(name: str, body: kopf.Body, **_: Any) -> Any:
        return {(None, name): _runtime_view(body)}

    def runtimes_of(kwargs: dict[str, Any]) -> Any:
        runtimes = _Runtimes(kwargs["modeldeploy_runtimes"], kwargs["modeldeploy_cluster_runtimes"])
        _state(kwargs["memo"]).runtimes = runtimes
        return runtimes

    @kopf.on.event(*MD, id="reconcile", registry=registry)
    async def reconcile_modeldeployment(
        event: dict[str, Any],
        body: kopf.Body,
        namespace: str,
        name: str,
        memo: Any,
        logger: Any,
        **kwargs: Any,
    ) -> None:
        """Level-based: any ModelDeployment whose current generation has not been acted on (or
        that the operator sees for the first time since it started) is converged. The events
        our own status patches cause are skipped: they change nothing to act on."""
        if event.get("type") == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
            return
        status = body.get("status") or {}
        first_sight = event.get("type") in (None, "ADDED")
        if (
            not first_sight
            and status.get("observedGeneration") == body["metadata"].get("generation")
            and not _command_pending(body)
        ):
            return
        await _converge_or_schedule(
            _state(memo), namespace, name, logger, runtimes_of({**kwargs, "memo": memo})
        )

    async def converge_owner(
        body: kopf.Body, namespace: str, memo: Any, logger: Any, **kwargs: Any
    ) -> None:
        owner = body.get("metadata", {}).get("labels", {}).get(naming.DEPLOYMENT_LABEL)
        if not owner:
            return
        try:
            await converge(
                _state(memo), namespace, owner, logger, runtimes_of({**kwargs, "memo": memo})
            )
        except TransientApiError as err:  # the resync timer retries
            logger.warning(
                f"reconciling {owner} after a change of {body['metadata']['name']}: {err}"
            )

    @kopf.on.event("batch", "v1", "jobs", id="staging-job", labels=OWNED, registry=registry)
    async def staging_job_changed(event: dict[str, Any], body: kopf.Body, **kwargs: Any) -> None:
        """Only a finished Job changes what the ModelDeployment needs; one that is merely
        running is reported by the next resync."""
        if event.get("type") != "DELETED" and job_phase(dict(body)) != "Running":
            await converge_owner(body=body, **kwargs)

    @kopf.on.event(
        "serving.kserve.io",
        "v1beta1",
        "inferenceservices",
        id="inference-service",
        labels=OWNED,
        registry=registry,
    )
    async def inference_service_changed(
        event: dict[str, Any], body: kopf.Body, namespace: str, name: str, memo: Any, **kwargs: Any
    ) -> None:
        state = _state(memo)
        key = (namespace, name)
        if event.get("type") == "DELETED":
            state.isvc_seen.pop(key, None)
            return
        signature = _isvc_signature(dict(body))
        if state.isvc_seen.get(key) == signature:
            return
        state.isvc_seen[key] = signature
        await converge_owner(body=body, namespace=namespace, memo=memo, **kwargs)

    @kopf.on.delete(*MD, id="release-artifacts", registry=registry, timeout=900)
    async def release_artifacts(
        body: kopf.Body, namespace: str, name: str, memo: Any, logger: Any, retry: int, **_: Any
    ) -> None:
        """Remove the artifacts only this ModelDeployment used (a Job, like staging: the operator
        never mounts the store). Children go by owner references."""
        state = _state(memo)
        if not leading(state):  # the leader releases; this replica keeps the finalizer on
            raise kopf.TemporaryError("not the leader", delay=5)
        if not (body.get("status") or {}).get("artifact"):
            return
        kube = state.kube
        job_name = naming.cleanup_job_name(name, body["metadata"]["uid"])
        job = await kube.job(namespace, job_name)
        if job is None:
            job = build_cleanup_job(parse(dict(body)), body["metadata"]["uid"], state.config)
            await kube.create_job(job)
            raise kopf.TemporaryError("releasing artifacts", delay=1)
        phase = job_phase(job)
        if phase == "Running":
            raise kopf.TemporaryError("releasing artifacts", delay=1)
        if phase == "Failed":
            kopf.warn(
                body,
                reason="ArtifactsNotReleased",
                message=f"Job {job_name} failed; artifacts stay in "
                f"{state.config.tenant_store(namespace)}",
            )
        await kube.delete_job(namespace, job_name)
