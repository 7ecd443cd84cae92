"""What each watched event means: memory kept current, and which ModelDeployment, if any, needs a
look. What that look does is the engine's (``controller/engine.py``), and every decision is
``reconcile.plan``'s.

Any event that may change what a ModelDeployment needs (its own change or deletion, a staging
Job or an InferenceService it owns changing) queues the same ``engine.converge``, as does the
engine's own periodic resync. The filters here only skip events that change nothing the
reconciliation reads: our own status patches coming back, a Job still running, an
InferenceService whose status moved in fields we do not read.

Each ``on_*`` is a plain function of the state and one event, returning the key to queue or
None; ``informers`` wires them to the watches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION
from modeldeploy.api.status import observed_generation
from modeldeploy.controller import naming, rollout
from modeldeploy.controller.bodies import Key, Owned, key_of
from modeldeploy.controller.engine import State, isvc_signature
from modeldeploy.controller.informer import Deliver, Informer, Resource
from modeldeploy.controller.job_state import job_phase
from modeldeploy.controller.kube import GATEWAY, KSERVE

MODELDEPLOYMENTS = Resource(GROUP, VERSION, PLURAL)
JOBS = Resource("batch", "v1", "jobs")
INFERENCE_SERVICES = Resource(KSERVE, "v1beta1", "inferenceservices")
ROUTES = Resource(GATEWAY, "v1", "httproutes")
SERVING_RUNTIMES = Resource(KSERVE, "v1alpha1", "servingruntimes")
CLUSTER_SERVING_RUNTIMES = Resource(KSERVE, "v1alpha1", "clusterservingruntimes")


def _owner(obj: dict[str, Any]) -> Key | None:
    """The ModelDeployment an object we made belongs to, by its label."""
    meta = obj["metadata"]
    owner = (meta.get("labels") or {}).get(naming.DEPLOYMENT_LABEL)
    return (meta["namespace"], owner) if owner else None


def on_modeldeployment(state: State, kind: str, body: dict[str, Any]) -> Key | None:
    """Level-based: a ModelDeployment whose current generation has not been acted on (or that
    this operator sees for the first time since it started) is converged. The events our own
    status and finalizer patches cause are skipped: they change nothing to act on
    (``State.own_writes``). A deletion is converged too: the artifacts are released, then the
    finalizer removed."""
    key = key_of(body)
    if kind == "DELETED":
        state.own_writes.pop(key, None)
        state.bodies.forget(*key)
        return None
    state.bodies.put(body)  # what the next reconciliation starts from
    meta = body["metadata"]
    if (
        kind == "MODIFIED"
        and not meta.get("deletionTimestamp")
        and (
            observed_generation(body) == meta.get("generation")
            or state.own_writes.get(key) == meta.get("resourceVersion")
        )
        and not rollout.command_pending(body)
    ):
        return None
    return key


def on_staging_job(state: State, kind: str, job: dict[str, Any]) -> Key | None:
    """A staging Job we made: held in memory, where the reconciliation reads it. Only a finished
    one changes what the ModelDeployment needs; one that is merely running is reported by the
    next resync."""
    owner = _owner(job)
    if (
        owner is None
        or (job["metadata"].get("labels") or {}).get(naming.ROLE_LABEL) != naming.STAGING
    ):
        return None  # a clean-up Job: the release reads it by name
    if state.staging_jobs is not None:
        if kind == "DELETED":
            state.staging_jobs.forget(owner, job["metadata"]["name"])
        else:
            state.staging_jobs.put(owner, job)
    if kind == "DELETED" or job_phase(job) == "Running":
        return None
    return owner


def on_inference_service(state: State, kind: str, isvc: dict[str, Any]) -> Key | None:
    """Every InferenceService's name is kept (``State.isvc_names``). One we own is held in
    memory, and its owner looked at only when something it reads changed (``isvc_signature``),
    not for our own apply coming back. Another's, made or removed under a ModelDeployment's
    name, has that ModelDeployment looked at: the conflict is reported, or over."""
    key = key_of(isvc)
    _track(state.isvc_names, kind, key)
    ours = naming.managed(isvc)
    if kind == "DELETED" or not ours:
        # Only ours are held: one gone, or not ours (any more), is read from the API server by
        # the next look.
        state.isvc_seen.pop(key, None)
        state.isvcs.forget(*key)
        return None if ours else _conflict_changed(state, kind, key)
    state.isvcs.put(isvc)  # what the next reconciliation reads (``bodies.py``)
    signature = isvc_signature(isvc)
    if state.isvc_seen.get(key) == signature:
        return None
    state.isvc_seen[key] = signature
    return _owner(isvc)


def on_route(state: State, kind: str, route: dict[str, Any]) -> Key | None:
    """Every HTTPRoute's name is kept (``State.route_names``), and ours are held as delivered
    (the gateways' status on them is read from the API server when it matters:
    ``engine.observe``). Another's, made or removed under a ModelDeployment's route name, has
    that ModelDeployment looked at."""
    key = key_of(route)
    _track(state.route_names, kind, key)
    ours = naming.managed(route)
    if ours and kind != "DELETED":
        state.routes.put(route)
        return None
    state.routes.forget(*key)  # only ours are held, as for an InferenceService
    if ours:
        return None
    suffix = naming.route_name("")
    if not key[1].endswith(suffix):
        return None
    return _conflict_changed(state, kind, (key[0], key[1][: -len(suffix)]))


def _track(names: set[Key] | None, kind: str, key: Key) -> None:
    """Keep a watch's every name current with one of its events."""
    if names is None:
        return
    if kind == "DELETED":
        names.discard(key)
    else:
        names.add(key)


def _conflict_changed(state: State, kind: str, deployment: Key) -> Key | None:
    """Another's object made or removed under a name of ``deployment``'s: that deployment, if
    there is one, to report the conflict or its end. A change to it changes neither."""
    return deployment if kind != "MODIFIED" and deployment in state.bodies else None


def informers(
    state: State, enqueue: Callable[[Key], None]
) -> tuple[list[Informer], list[Informer]]:
    """The watches: the runtimes' (which must be listed before any ModelDeployment is looked
    at, or a runtime not yet listed would read as missing), then the rest, per namespace
    watched or cluster-wide."""
    # What the watches fill, the engine reads in place of GETs and listings (``State``).
    state.staging_jobs = Owned()
    state.isvc_names = set()
    state.route_names = set()
    index, kube = state.runtimes, state.kube
    scopes: list[str | None] = list(state.namespaces) if state.namespaces else [None]
    owned = naming.selector(naming.OWNED)

    def queueing(on: Callable[[State, str, dict[str, Any]], Key | None]) -> Deliver:
        def deliver(kind: str, obj: dict[str, Any]) -> None:
            key = on(state, kind, obj)
            if key is not None:
                enqueue(key)

        return deliver

    runtimes = [
        Informer(kube, CLUSTER_SERVING_RUNTIMES,
                 lambda kind, obj: index.on_event(kind, obj, cluster=True)),
        *(Informer(kube, SERVING_RUNTIMES,
                   lambda kind, obj: index.on_event(kind, obj, cluster=False), namespace=scope)
          for scope in scopes),
    ]  # fmt: skip
    rest = [
        informer
        for scope in scopes
        for informer in (
            Informer(kube, MODELDEPLOYMENTS, queueing(on_modeldeployment), namespace=scope),
            Informer(kube, JOBS, queueing(on_staging_job), namespace=scope, selector=owned),
            # Every one, not only ours: a name none has is then known missing without a GET.
            Informer(kube, INFERENCE_SERVICES, queueing(on_inference_service), namespace=scope),
            # No Gateway API on the cluster (Knative mode only): no route is ever there.
            Informer(kube, ROUTES, queueing(on_route), namespace=scope, optional=True),
        )
    ]
    return runtimes, rest
