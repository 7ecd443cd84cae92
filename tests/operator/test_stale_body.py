"""The reconciliation starts from the ModelDeployment as the operator last saw it
(``controller/bodies.py``), not from a GET. Against the real API server: when that memory is
behind, the first write is refused by its resourceVersion precondition, and the
reconciliation runs again from a fresh read, so nothing is decided on the stale spec."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import yaml
from kubernetes import client

from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.engine import State, converge
from modeldeploy.controller.handlers import _runtime_view
from modeldeploy.controller.kube import ConflictError, Kube
from modeldeploy.controller.naming import STAGING, labels
from tests.operator.conftest import MD, digits_spec
from tests.support.controlplane import REPO_ROOT

pytestmark = [pytest.mark.cluster]

NAME = "remembered"
CONFIG = OperatorConfig(artifact_store="pvc://artifacts/store")


class Runtimes:
    """The runtime index kopf would pass: our ClusterServingRuntime, as the handlers see it."""

    def __init__(self) -> None:
        runtime = yaml.safe_load((REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml").read_text())
        self.view = {(None, runtime["metadata"]["name"]): [_runtime_view(runtime)]}

    def get(self, key: tuple[str | None, str]) -> Any:
        return self.view.get(key)


def _converge(state: State, namespace: str) -> None:
    async def once() -> None:
        try:
            await converge(state, namespace, NAME, logging.getLogger(__name__), Runtimes())
        finally:
            await state.kube.aclose()

    asyncio.run(once())


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
