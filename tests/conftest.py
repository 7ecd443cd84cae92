"""Shared fixtures. The cluster ones start a real kube-apiserver + etcd once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modeldeploy.testing import Assets, Cluster, ControlPlane, ControlPlaneError, ExistingCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real control plane with our CRDs and the KServe and Gateway API ones installed.

    With MODELDEPLOY_TEST_KUBECONFIG set, the cluster it names is used instead (it must have
    KServe and the Gateway API installed; our CRD is applied to it).
    """
    existing = os.environ.get("MODELDEPLOY_TEST_KUBECONFIG")
    if existing:
        cluster = ExistingCluster(Assets.provide(), Path(existing))
        cluster.install_crds()
        yield cluster
        return
    try:
        plane = ControlPlane(tmp_path_factory.mktemp("envtest"), Assets.provide())
        plane.start()
    except ControlPlaneError as err:
        pytest.fail(f"test control plane did not start:\n{err}", pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane):  # type: ignore[no-untyped-def]
    """A kubernetes ApiClient authenticated as the control plane's admin."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace for one test (deleted afterwards; no controller finalises it)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
