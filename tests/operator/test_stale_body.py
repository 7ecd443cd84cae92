"""The reconciliation starts from the ModelDeployment and its InferenceService as the operator
last saw them (``controller/bodies.py``), not from GETs. Against the real API server: when the
ModelDeployment in memory is behind, the first write is refused by its resourceVersion
precondition, and the reconciliation runs again from a fresh read, so nothing is decided on the
stale spec. The InferenceService in memory is what the watch delivered; the watch's listing
corrects it, and another's under our name is never held. Our HTTPRoute is held the same way, from
our applies' answers and the route watch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kubernetes import client

from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.engine import State, _route, converge
from modeldeploy.controller.handlers import (
    INFERENCE_SERVICES,
    ROUTES,
    on_inference_service,
    on_route,
)
from modeldeploy.controller.informer import Informer, Resource
from modeldeploy.controller.kube import ConflictError, Kube
from modeldeploy.controller.naming import STAGING, labels, route_name
from tests.operator.conftest import ISVC, MD, digits_spec
from tests.support.beside import run_beside
from tests.support.controlplane import REPO_ROOT

pytestmark = [pytest.mark.cluster]

NAME = "remembered"
CONFIG = OperatorConfig(artifact_store="pvc://artifacts/store")


RUNTIME = yaml.safe_load((REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml").read_text())


def _converge(state: State, namespace: str) -> None:
    # The runtime index as its watch fills it: our ClusterServingRuntime.
    state.runtimes.on_event("ADDED", RUNTIME, cluster=True)

    async def once() -> None:
        try:
            await converge(state, namespace, NAME, logging.getLogger(__name__))
        finally:
            await state.kube.aclose()

    asyncio.run(once())


Handler = Callable[[State, str, dict[str, Any]], Any]


def _watched(
    state: State,
    namespace: str,
    watch: tuple[Resource, Handler],
    meanwhile: Callable[[], Any] = lambda: None,
    until: Callable[[], bool] = lambda: True,
) -> None:
    """The operator's own watch of one resource (``handlers.informers``) runs until it has
    listed, then while ``meanwhile`` changes the API server, until ``until`` holds."""
    resource, handler = watch
    informer = Informer(state.kube, resource, lambda kind, obj: handler(state, kind, obj),
                        namespace=namespace)  # fmt: skip

    async def scenario() -> None:
        await informer.synced.wait()
        await asyncio.to_thread(meanwhile)
        while not until():
            await asyncio.sleep(0.05)

    run_beside(informer.run, scenario, 60, finally_=state.kube.aclose)


def _created_then_moved(
    custom: client.CustomObjectsApi, namespace: str, change: dict[str, Any]
) -> dict[str, Any]:
    """The ModelDeployment as created; ``change`` is then patched onto it, so the API server has
    moved past the body returned."""
    doc = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
           "metadata": {"name": NAME}, "spec": digits_spec()}  # fmt: skip
    created: dict[str, Any] = custom.create_namespaced_custom_object(*MD[:2], namespace, MD[2], doc)
    custom.patch_namespaced_custom_object(*MD[:2], namespace, MD[2], NAME, change)
    return created


def test_a_reconciliation_from_a_stale_body_runs_again_from_a_fresh_read(
    api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    # The spec moves on while the operator's memory still holds the first version.
    created = _created_then_moved(
        custom, namespace, {"spec": {"model": {"uri": "pvc://models/v2/model.pt"}}}
    )
    state = State(CONFIG, Kube(api_client), [namespace])
    state.bodies.put(created)
    _converge(state, namespace)
    stored = custom.get_namespaced_custom_object(*MD[:2], namespace, MD[2], NAME)
    assert stored["metadata"]["generation"] == 2
    assert stored["status"]["observedGeneration"] == 2
    selector = ",".join(f"{k}={v}" for k, v in labels(NAME, STAGING).items())
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace, label_selector=selector)
    # One staging Job, for the spec as it is now: none was made from the stale one.
    assert len(jobs.items) == 1
    job = str(api_client.sanitize_for_serialization(jobs.items[0]))
    assert "pvc://models/v2/model.pt" in job
    assert "pvc://models/digits/model.pt" not in job
    # And memory now holds what the API server answered last.
    held = state.bodies.get(namespace, NAME)
    assert held is not None
    assert held["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_a_status_patch_on_a_moved_object_is_refused_and_changes_nothing(
    api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    created = _created_then_moved(
        custom, namespace, {"metadata": {"annotations": {"touched": "yes"}}}
    )
    kube = Kube(api_client)

    async def stale_patch() -> None:
        try:
            await kube.patch_status(
                namespace, NAME, {"observedGeneration": 1}, created["metadata"]["resourceVersion"]
            )
        finally:
            await kube.aclose()

    with pytest.raises(ConflictError):
        asyncio.run(stale_patch())
    stored = custom.get_namespaced_custom_object(*MD[:2], namespace, MD[2], NAME)
    assert "status" not in stored or "observedGeneration" not in stored["status"]


def _ours_and_theirs(
    custom: client.CustomObjectsApi, namespace: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our ModelDeployment, and another's InferenceService (no labels, no owner) under its name."""
    created: dict[str, Any] = custom.create_namespaced_custom_object(*MD[:2], namespace, MD[2], {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME}, "spec": digits_spec(),
    })  # fmt: skip
    theirs: dict[str, Any] = custom.create_namespaced_custom_object(
        *ISVC[:2], namespace, ISVC[2], {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"},
                                         "storageUri": "s3://their-bucket/model"}}},
    })  # fmt: skip
    return created, theirs


Conflict = tuple[client.CustomObjectsApi, dict[str, Any], dict[str, Any], State]


@pytest.fixture
def conflict(api_client: client.ApiClient, namespace: str) -> Conflict:
    """Our ModelDeployment, another's InferenceService under its name, and an operator's state
    with nothing in memory."""
    custom = client.CustomObjectsApi(api_client)
    created, theirs = _ours_and_theirs(custom, namespace)
    return custom, created, theirs, State(CONFIG, Kube(api_client), [namespace])


def _claimed(
    theirs: dict[str, Any], created: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    """``theirs`` as if it were ours, with ``status``: what a watch event of ours would hold."""
    meta = {**theirs["metadata"], "labels": labels(NAME), "ownerReferences": [
        {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "name": NAME,
         "uid": created["metadata"]["uid"], "controller": True},
    ]}  # fmt: skip
    return {**theirs, "metadata": meta, "status": status}


def _ready(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    stored: dict[str, Any] = custom.get_namespaced_custom_object(*MD[:2], namespace, MD[2], NAME)
    return next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")


def test_another_owners_inference_service_is_never_held_so_its_removal_is_seen_at_once(
    api_client: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    _ours_and_theirs(custom, namespace)
    state = State(CONFIG, Kube(api_client), [namespace])
    _converge(state, namespace)
    assert _ready(custom, namespace)["reason"] == "NameConflict"
    # Our watch selects by our label and would never tell us of its deletion: not in memory.
    assert state.isvcs.get(namespace, NAME) is None
    custom.delete_namespaced_custom_object(*ISVC[:2], namespace, ISVC[2], NAME)
    _converge(state, namespace)  # an ordinary reconciliation, not the resync's fresh one
    assert _ready(custom, namespace)["reason"] != "NameConflict"


def test_the_inference_service_comes_from_memory_and_the_watchs_listing_corrects_it(
    conflict: Conflict, namespace: str
) -> None:
    custom, created, theirs, state = conflict
    # Memory says the InferenceService is ours and settled (Ready on its current spec), as a
    # watch event of an owned one would (a watch that then missed its replacement by another's).
    state.isvcs.put(_claimed(theirs, created, {
        "observedGeneration": theirs["metadata"]["generation"], "url": "http://x",
        "conditions": [{"type": "Ready", "status": "True"}],
    }))  # fmt: skip
    _converge(state, namespace)
    assert _ready(custom, namespace)["reason"] != "NameConflict"  # no GET was made

    # The watch's listing delivers it as it is, another's: dropped from memory.
    _watched(state, namespace, (INFERENCE_SERVICES, on_inference_service))
    assert state.isvcs.get(namespace, NAME) is None
    _converge(state, namespace)
    assert _ready(custom, namespace)["reason"] == "NameConflict"
    assert state.isvcs.get(namespace, NAME) is None  # another's is never held


def test_an_inference_service_not_yet_ready_is_read_from_the_api_server(
    conflict: Conflict, namespace: str
) -> None:
    custom, created, theirs, state = conflict
    # Ours in memory, but KServe has not reported on it: its next status may be queued behind
    # this reconciliation, so the API server is asked (and has another's there).
    state.isvcs.put(_claimed(theirs, created, {}))
    _converge(state, namespace)
    assert _ready(custom, namespace)["reason"] == "NameConflict"


ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")


def _route_read(state: State, namespace: str, uid: str | None) -> dict[str, Any] | None:
    async def once() -> dict[str, Any] | None:
        try:
            return await _route(state, namespace, route_name(NAME), uid, False)
        finally:
            await state.kube.aclose()

    return asyncio.run(once())


def _make_route(custom: client.CustomObjectsApi, namespace: str, uid: str, owned: bool) -> None:
    """A route under our name: ours (our label, owned by the ModelDeployment ``uid``) or not."""
    meta: dict[str, Any] = {"name": route_name(NAME), "namespace": namespace}
    if owned:
        meta["labels"] = labels(NAME)
        meta["ownerReferences"] = [
            {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "name": NAME,
             "uid": uid, "controller": True},
        ]  # fmt: skip
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": meta,
             "spec": {"hostnames": [f"{NAME}.example.com"]}}  # fmt: skip
    custom.create_namespaced_custom_object(*ROUTE[:2], namespace, ROUTE[2], route)


def _route_made_and_read(
    conflict: Conflict, namespace: str, owned: bool
) -> tuple[client.CustomObjectsApi, State, str, dict[str, Any] | None]:
    """A route under our name made, then read once by the operator's ``observe`` path."""
    custom, created, _, state = conflict
    uid = created["metadata"]["uid"]
    _make_route(custom, namespace, uid, owned)
    return custom, state, uid, _route_read(state, namespace, uid)


def test_our_route_is_read_once_then_from_memory_until_the_route_watch_drops_it(
    conflict: Conflict, namespace: str
) -> None:
    custom, state, uid, first = _route_made_and_read(conflict, namespace, owned=True)
    assert first is not None
    assert state.routes.get(namespace, route_name(NAME)) is not None
    custom.delete_namespaced_custom_object(*ROUTE[:2], namespace, ROUTE[2], route_name(NAME))
    # No GET: memory still answers (only the operator writes the route's spec).
    held = _route_read(state, namespace, uid)
    assert held is not None
    assert held["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    # Held for another ModelDeployment of the same name (an earlier one, deleted): not used.
    assert _route_read(state, namespace, "another-uid") is None
    _make_route(custom, namespace, uid, owned=True)
    _route_read(state, namespace, uid)
    # The route watch delivers its deletion: dropped, and read again.
    _watched(
        state, namespace, (ROUTES, on_route),
        meanwhile=lambda: custom.delete_namespaced_custom_object(
            *ROUTE[:2], namespace, ROUTE[2], route_name(NAME)),
        until=lambda: state.routes.get(namespace, route_name(NAME)) is None,
    )  # fmt: skip
    assert state.routes.get(namespace, route_name(NAME)) is None
    assert _route_read(state, namespace, uid) is None


def test_another_owners_route_under_our_name_is_never_held(
    conflict: Conflict, namespace: str
) -> None:
    custom, state, uid, first = _route_made_and_read(conflict, namespace, owned=False)
    assert first is not None
    assert state.routes.get(namespace, route_name(NAME)) is None
    custom.delete_namespaced_custom_object(*ROUTE[:2], namespace, ROUTE[2], route_name(NAME))
    assert _route_read(state, namespace, uid) is None  # its removal is seen at once
