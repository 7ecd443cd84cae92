"""What each watched event means (``controller/handlers.py``): which ModelDeployment it queues,
if any, and what it leaves in memory. Plain functions of the state and one event; the watches
that call them are tested against the real API server (``tests/operator/test_informer.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from modeldeploy.controller.bodies import Owned
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.engine import State, _inference_service
from modeldeploy.controller.handlers import (
    on_inference_service,
    on_modeldeployment,
    on_route,
    on_staging_job,
)
from modeldeploy.controller.kube import Kube, TransientApiError
from modeldeploy.controller.naming import (
    ABORT_ANNOTATION,
    DEPLOYMENT_LABEL,
    OWNED,
    ROLE_LABEL,
    STAGING,
)
from modeldeploy.controller.runtime_index import RuntimeIndex

KEY = ("ml", "digits")


def _state() -> State:
    # No request is made: the handlers only read and fill memory.
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    return State(OperatorConfig(artifact_store="pvc://a/b"), Kube(api))


def _md(version: str, generation: int, observed: int | None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "digits", "resourceVersion": version,
                     "generation": generation, **meta},
        "spec": {},
        **({"status": {"observedGeneration": observed}} if observed is not None else {}),
    }  # fmt: skip


def test_a_deployment_first_seen_is_queued_even_when_its_generation_was_acted_on() -> None:
    state = _state()
    assert on_modeldeployment(state, "ADDED", _md("5", 2, 2)) == KEY
    assert state.bodies.get(*KEY) is not None  # the next look starts from memory


def test_a_change_to_a_generation_already_acted_on_is_not_queued_a_new_one_is() -> None:
    state = _state()
    assert on_modeldeployment(state, "MODIFIED", _md("6", 2, 2)) is None
    assert on_modeldeployment(state, "MODIFIED", _md("7", 3, 2)) == KEY
    assert state.bodies.get(*KEY)["metadata"]["resourceVersion"] == "7"  # type: ignore[index]


def test_our_own_finalizer_write_coming_back_is_not_queued() -> None:
    state = _state()
    state.own_writes[KEY] = "8"
    assert on_modeldeployment(state, "MODIFIED", _md("8", 1, None)) is None
    assert on_modeldeployment(state, "MODIFIED", _md("9", 1, None)) == KEY


def test_a_pending_command_or_a_deletion_is_queued_whatever_the_generation() -> None:
    state = _state()
    command = _md("10", 2, 2, annotations={ABORT_ANNOTATION: "true"})
    assert on_modeldeployment(state, "MODIFIED", command) == KEY
    deleting = _md("11", 2, 2, deletionTimestamp="2026-12-03T00:00:00Z")
    assert on_modeldeployment(state, "MODIFIED", deleting) == KEY


def test_a_deleted_deployment_is_forgotten_and_not_queued() -> None:
    state = _state()
    on_modeldeployment(state, "ADDED", _md("5", 1, None))
    state.own_writes[KEY] = "5"
    assert on_modeldeployment(state, "DELETED", _md("6", 1, None)) is None
    assert state.bodies.get(*KEY) is None
    assert KEY not in state.own_writes


def _job(
    conditions: list[dict[str, str]], owner: str | None = "digits", role: str = STAGING
) -> dict[str, Any]:
    labels = {**OWNED, ROLE_LABEL: role, **({DEPLOYMENT_LABEL: owner} if owner else {})}
    return {"metadata": {"namespace": "ml", "name": f"digits-{role}-1", "labels": labels,
                         "resourceVersion": str(len(conditions) + 1)},
            "status": {"conditions": conditions}}  # fmt: skip


def test_only_a_finished_staging_job_queues_its_deployment() -> None:
    state = _state()
    assert on_staging_job(state, "ADDED", _job([])) is None
    done = [{"type": "Complete", "status": "True"}]
    assert on_staging_job(state, "MODIFIED", _job(done)) == KEY
    failed = [{"type": "Failed", "status": "True"}]
    assert on_staging_job(state, "MODIFIED", _job(failed)) == KEY
    assert on_staging_job(state, "DELETED", _job(done)) is None
    assert on_staging_job(state, "MODIFIED", _job(done, owner=None)) is None
    assert on_staging_job(state, "MODIFIED", _job(done, role="cleanup")) is None


def test_staging_jobs_are_held_per_deployment_where_a_watch_fills_them() -> None:
    state = _state()
    state.staging_jobs = Owned()
    on_staging_job(state, "ADDED", _job([]))
    assert [j["status"]["conditions"] for j in state.staging_jobs.of(KEY)] == [[]]
    on_staging_job(state, "MODIFIED", _job([{"type": "Complete", "status": "True"}]))
    [held] = state.staging_jobs.of(KEY)
    assert held["status"]["conditions"][0]["type"] == "Complete"
    on_staging_job(state, "ADDED", _job([]))  # an older event after a newer one: kept newer
    assert state.staging_jobs.of(KEY)[0]["status"]["conditions"]
    on_staging_job(state, "MODIFIED", _job([], role="cleanup"))  # not a staging Job
    assert len(state.staging_jobs.of(KEY)) == 1
    on_staging_job(state, "DELETED", held)
    assert state.staging_jobs.of(KEY) == []


def _isvc(version: str, ready: str, generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "digits", "resourceVersion": version,
                     "generation": generation, "labels": {**OWNED, DEPLOYMENT_LABEL: "digits"}},
        "status": {"observedGeneration": generation,
                   "conditions": [{"type": "Ready", "status": ready}]},
    }  # fmt: skip


def test_an_inference_service_queues_its_owner_only_when_what_the_status_reads_changed() -> None:
    state = _state()
    assert on_inference_service(state, "ADDED", _isvc("1", "False")) == KEY
    # Our own apply or KServe touching other fields: the same signature.
    assert on_inference_service(state, "MODIFIED", _isvc("2", "False")) is None
    assert state.isvcs.get(*KEY)["metadata"]["resourceVersion"] == "2"  # type: ignore[index]
    assert on_inference_service(state, "MODIFIED", _isvc("3", "True")) == KEY
    assert on_inference_service(state, "DELETED", _isvc("4", "True")) is None
    assert state.isvcs.get(*KEY) is None
    assert KEY not in state.isvc_seen


def test_the_runtime_index_keeps_cluster_and_namespaced_runtimes_apart() -> None:
    index = RuntimeIndex()
    runtime = {"metadata": {"name": "onnx", "namespace": "ml", "annotations": {"a": "b"}},
               "spec": {"supportedModelFormats": [{"name": "onnx"}], "containers": [{}]}}  # fmt: skip
    index.on_event("ADDED", runtime, cluster=False)
    assert index.get(None, "onnx") is None
    view = index.get("ml", "onnx") or {}
    assert view["spec"]["supportedModelFormats"] == [{"name": "onnx"}]
    assert "containers" not in view["spec"]  # only what the resolution reads is held
    index.on_event("ADDED", {"metadata": {"name": "onnx"}, "spec": {}}, cluster=True)
    assert index.get(None, "onnx") is not None
    index.on_event("DELETED", runtime, cluster=False)
    assert index.get("ml", "onnx") is None
    assert index.get(None, "onnx") is not None


def test_every_inference_service_name_is_kept_and_only_ours_are_held() -> None:
    state = _state()
    state.isvc_names = set()
    theirs = {"metadata": {"namespace": "ml", "name": "other", "resourceVersion": "1"}}
    assert on_inference_service(state, "ADDED", theirs) is None  # no deployment of that name
    assert ("ml", "other") in state.isvc_names
    assert state.isvcs.get("ml", "other") is None
    on_inference_service(state, "ADDED", _isvc("1", "False"))
    assert KEY in state.isvc_names
    on_inference_service(state, "DELETED", theirs)
    assert state.isvc_names == {KEY}


def test_anothers_inference_service_made_or_removed_under_a_deployments_name_queues_it() -> None:
    state = _state()
    state.isvc_names = set()
    on_modeldeployment(state, "ADDED", _md("1", 1, None))
    theirs = {"metadata": {"namespace": "ml", "name": "digits", "resourceVersion": "2"}}
    assert on_inference_service(state, "ADDED", theirs) == KEY  # now a name conflict
    assert on_inference_service(state, "MODIFIED", theirs) is None
    assert state.isvcs.get(*KEY) is None  # never held as ours
    assert on_inference_service(state, "DELETED", theirs) == KEY  # the conflict is over


def test_a_name_the_watch_has_never_seen_is_missing_without_a_request() -> None:
    state = _state()  # its API server address answers nothing: a request would fail
    state.isvc_names = {("ml", "other")}

    async def looks() -> None:
        try:
            assert await _inference_service(state, "ml", "digits", fresh=False) is None
            with pytest.raises(TransientApiError):  # fresh: always asked
                await _inference_service(state, "ml", "digits", fresh=True)
        finally:
            await state.kube.aclose()

    asyncio.run(looks())


def test_route_names_are_kept_and_anothers_route_under_a_deployments_route_name_queues_it() -> None:
    state = _state()
    state.route_names = set()
    on_modeldeployment(state, "ADDED", _md("1", 1, None))
    theirs = {"metadata": {"namespace": "ml", "name": "digits-traffic", "resourceVersion": "2"}}
    assert on_route(state, "ADDED", theirs) == KEY
    assert ("ml", "digits-traffic") in state.route_names
    assert on_route(state, "MODIFIED", theirs) is None  # a gateway's status: nothing to report
    assert on_route(state, "DELETED", theirs) == KEY
    assert state.route_names == set()
    unrelated = {"metadata": {"namespace": "ml", "name": "web", "resourceVersion": "3"}}
    assert on_route(state, "ADDED", unrelated) is None


def test_our_route_deleted_is_forgotten_so_the_next_look_applies_it_again() -> None:
    state = _state()
    state.route_names = set()
    ours = {"metadata": {"namespace": "ml", "name": "digits-traffic", "resourceVersion": "4",
                         "labels": {**OWNED, DEPLOYMENT_LABEL: "digits"}}}  # fmt: skip
    assert on_route(state, "ADDED", ours) is None
    changed = {**ours, "metadata": {**ours["metadata"], "resourceVersion": "5"}, "spec": {"x": 1}}
    assert on_route(state, "MODIFIED", changed) is None  # held as changed: the look puts it right
    assert state.routes.get("ml", "digits-traffic")["spec"] == {"x": 1}  # type: ignore[index]
    assert on_route(state, "DELETED", ours) is None
    assert state.routes.get("ml", "digits-traffic") is None
    assert state.route_names == set()


def test_ours_delivered_as_anothers_is_no_longer_held_so_the_next_look_asks_the_api_server() -> (
    None
):
    state = _state()
    on_modeldeployment(state, "ADDED", _md("1", 1, None))
    on_inference_service(state, "ADDED", _isvc("1", "True"))
    assert state.isvcs.get(*KEY) is not None
    # Our label taken away (or ours replaced by another's within one relisting).
    theirs = {"metadata": {"namespace": "ml", "name": "digits", "resourceVersion": "9"}}
    on_inference_service(state, "MODIFIED", theirs)
    assert state.isvcs.get(*KEY) is None
    assert KEY not in state.isvc_seen
    route = {"metadata": {"namespace": "ml", "name": "digits-traffic", "resourceVersion": "4",
                          "labels": {**OWNED, DEPLOYMENT_LABEL: "digits"}}}  # fmt: skip
    on_route(state, "ADDED", route)
    assert state.routes.get("ml", "digits-traffic") is not None
    on_route(state, "MODIFIED", {"metadata": {**route["metadata"], "labels": {}}})
    assert state.routes.get("ml", "digits-traffic") is None
