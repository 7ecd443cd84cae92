"""Shared fixtures. The cluster ones start a real kube-apiserver + etcd once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import Assets, Cluster, ControlPlane, ControlPlaneError, ExistingCluster

if TYPE_CHECKING:
    from kubernetes import client

    from tests.operator.conftest import Kube
    from tests.support.cluster import KServeCluster
    from tests.support.processes import LocalStack


TORCH_FIXTURES = frozenset({
    "stack",  # builds the demo's digits model with PyTorch
    "digits_data", "digits_cnn", "digits_mlp", "files",  # tests/staging/conftest.py
    "digits_model_file", "digits_artifact", "image_artifact", "runtime", "broken_artifact",
    "dtypes_artifact", "slow_artifact",  # tests/runtime/conftest.py: staged by the real staging
})  # fmt: skip
"""Fixtures that train, trace or stage a model: a test using any of them needs PyTorch."""


# First: pytest-xdist's worker reads the ``xdist_group`` markers in this same hook (to suffix each
# node id with its group), and its hook, registered after this conftest, would otherwise run
# before the markers exist, leaving every test ungrouped, handed out one by one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by need, read from what each test uses (its whole fixture closure): ``cluster``
    for the control plane, ``staging`` for PyTorch. Modules whose tests stage models in their
    own bodies say so themselves (``pytestmark``). ``make test-fast`` runs what needs neither."""
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if "control_plane" in needs:
            item.add_marker(pytest.mark.cluster)
        if needs & TORCH_FIXTURES:
            item.add_marker(pytest.mark.staging)
        item.add_marker(pytest.mark.xdist_group(worker_group(item.nodeid, needs)))


def worker_group(nodeid: str, needs: set[str]) -> str:
    """Which tests one ``make test`` worker (pytest-xdist, ``--dist loadgroup``) runs together:
    a module's tests share its fixtures, so they stay on one worker; and every test on the
    KServe cluster goes to the same one, which then starts that cluster (about a minute of CPU
    with its seven processes) once instead of on each worker."""
    if "kserve_cluster" in needs:
        return "kserve-cluster"
    return nodeid.split("::", 1)[0]


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
def kserve_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeCluster]:
    """A cluster of its own with KServe's manager, the controllers, the gateway and a node
    (``tests/support/cluster.py``): KServe's webhooks refuse every InferenceService write while
    it is down, so it never shares the suite's control plane. Its node has four GPUs of the
    GPU example's product."""
    from tests.support.cluster import KServeCluster
    from tests.support.kubelet.node import NodeShape

    cluster = KServeCluster(
        tmp_path_factory.mktemp("kserve"), NodeShape(gpus=4, gpu_product="NVIDIA-A100-SXM4-80GB")
    )
    try:
        cluster.start()
    except ControlPlaneError as err:
        pytest.fail(f"the KServe cluster did not start:\n{err}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_kserve(kserve_cluster: KServeCluster) -> Iterator[KServeCluster]:
    """The KServe cluster for one test: the namespaces it made are deleted after it (the
    namespace controller deletes what they hold, the node agent stops their pods), so one
    test's pods never hold the node's capacity for the next."""
    from kubernetes import client

    from tests.support.cluster import wait_until

    core = client.CoreV1Api(kserve_cluster.api)
    before = {n.metadata.name for n in core.list_namespace().items}
    yield kserve_cluster
    made = {n.metadata.name for n in core.list_namespace().items} - before
    custom = client.CustomObjectsApi(kserve_cluster.api)
    for name in made:
        # A test that uninstalled the operator leaves its finalizer on the ModelDeployments it
        # made; nothing would remove it, and the namespace would never go.
        for found in custom.list_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", name, "modeldeployments")["items"]:  # fmt: skip
            custom.patch_namespaced_custom_object(
                "modeldeploy.io", "v1alpha1", name, "modeldeployments",
                found["metadata"]["name"], {"metadata": {"finalizers": None}})  # fmt: skip
        core.delete_namespace(name)
    # What the next test needs back is the node's capacity and the volumes, not the names: the
    # namespace controller looks again only half the pods' grace period after its first pass
    # (16 s for KServe's predictors' 30 s), and the namespaces go then. A test that claims one
    # of these names again waits for it there (KServeCluster.claim).
    wait_until("the test's pods and claims gone", lambda: not any(
        core.list_namespaced_pod(n).items or core.list_namespaced_persistent_volume_claim(n).items
        for n in made), timeout=120)  # fmt: skip
    held = {v.metadata.name for v in core.list_persistent_volume().items
            if v.spec.claim_ref is not None and v.spec.claim_ref.namespace in made}  # fmt: skip
    for volume in held:
        core.delete_persistent_volume(volume)
    wait_until("their volumes deleted", lambda: not held & {
        v.metadata.name for v in core.list_persistent_volume().items})  # fmt: skip


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


# --- The operator's stack: one executor for the session (tests/operator, tests/security) ------


@pytest.fixture(scope="session")
def stack(control_plane: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    from tests.support.controlplane import REPO_ROOT
    from tests.support.demo_model import build_digits_model
    from tests.support.processes import LocalStack

    root = tmp_path_factory.mktemp("stack")
    stack = LocalStack(control_plane.kubeconfig, root / "work", root / "pvc")
    # Forced: a chart test may have left the runtime behind (keepOnUninstall) with other images;
    # the operator tests need it as this checkout defines it.
    control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts",
        "-f", str(REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"),
    )  # fmt: skip
    build_digits_model(stack.pvc_root / "models" / "digits" / "model.pt")
    stack.executor()
    yield stack
    stack.stop()


@pytest.fixture
def store(namespace: str) -> str:
    """An artifact store of this test's own: no test sees another's artifacts (cache hits)."""
    return f"pvc://artifacts/{namespace}"


@pytest.fixture
def store_dir(stack: LocalStack, namespace: str) -> Path:
    """The folder the executor maps this namespace's prefix of ``store`` to."""
    return stack.pvc_root / "artifacts" / namespace / namespace


@pytest.fixture
def start_operator(stack: LocalStack, namespace: str, store: str) -> Iterator[Callable[..., Any]]:
    """Start an operator watching only this test's namespace (more args go to the CLI)."""
    started = []

    def start(*args: str, namespaces: list[str] | None = None, **kwargs: Any) -> Any:
        managed = stack.operator(
            "--artifact-store", store, *args, namespaces=namespaces or [namespace], **kwargs
        )
        started.append(managed)
        return managed

    yield start
    for managed in started:
        managed.stop()


@pytest.fixture
def kube(api_client: client.ApiClient, namespace: str) -> Kube:
    from tests.operator.conftest import Kube

    return Kube(api_client, namespace)


@pytest.fixture
def second_namespace(api_client: client.ApiClient, namespace: str) -> Iterator[str]:
    """Another fresh namespace, named after the first."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"{namespace}-b"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
