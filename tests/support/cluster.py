"""A cluster as a platform engineer builds one from kind and KServe's quick start, on this
machine: the control plane (``controlplane``), kube-controller-manager and kube-scheduler
(``controllers``), KServe's manager in Standard mode with Gateway API on (``kserve``), Traefik
serving KServe's Gateway (``traefik``), Prometheus scraping the predictor pods it discovers
(``prometheus``), and one node whose pods run as local processes (``kubelet``), with our
ClusterServingRuntime and KServe's Triton runtime installed.

Volumes: ``claim`` gives a namespace a PersistentVolumeClaim bound to a hostPath volume under
``pvc_root/<claim>``, as an administrator provides one; ``MODELDEPLOY_PVC_ROOT=pvc_root`` lets
anything on the host read ``pvc://<claim>/...`` as those pods do.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.support.controllers import Controllers
from tests.support.controlplane import REPO_ROOT, Assets, ControlPlane, account_token
from tests.support.kserve import GATEWAY, KServe, config_dir
from tests.support.kubelet.agent import NodeAgent
from tests.support.kubelet.network import PodNetwork
from tests.support.kubelet.node import NodeShape
from tests.support.prometheus import READ_PODS, Prometheus, cluster_pods
from tests.support.traefik import Traefik

T = TypeVar("T")
OUR_RUNTIME = REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml"
CHART = REPO_ROOT / "charts" / "modeldeploy"
CHART_NAMESPACE = "modeldeploy-system"
RELEASE = "modeldeploy"


def wait_until(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    """``check``'s first truthy answer, asked every 0.2 s; an AssertionError naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.2)
    return found


def through_gateway(what: str, call: Callable[[], T], timeout: float = 60) -> T:
    """``call``'s first answer that is not the gateway's own 404 or 503, asked every 0.2 s.

    KServe calls an InferenceService Ready once its predictor is available and the gateway has
    accepted its HTTPRoutes. Traefik routes to a backend only once it has read a ready endpoint
    in the backend's EndpointSlice, which the EndpointSlice controller writes after the pod turns
    Ready; until then it answers 503 (no server), or 404 while the route is not yet loaded. A
    client of a real cluster sees the same moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except urllib.error.HTTPError as err:
            if err.code not in (404, 503) or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {err.code} {err.read()[:300]!r}") from err
        time.sleep(0.2)


@dataclass
class KServeCluster:
    workdir: Path
    node: NodeShape = field(default_factory=NodeShape)
    plane: ControlPlane = field(init=False)
    api: client.ApiClient = field(init=False)
    agent: NodeAgent = field(init=False)
    gateway: Traefik = field(init=False)
    prometheus: Prometheus = field(init=False)
    """At the node's bridge address, so the operator reaches it from a pod or from the node."""
    timings: dict[str, float] = field(init=False, default_factory=dict)
    """Seconds from the start of ``start`` at which each part was up (``make bench``)."""
    _stops: list[Any] = field(init=False, default_factory=list)

    @property
    def pvc_root(self) -> Path:
        return self.workdir / "pvc"

    def start(self, assets: Assets | None = None) -> None:
        """Everything, in the order a cluster comes up; on a failure what started is stopped."""
        began = time.perf_counter()

        def up(part: str) -> None:
            self.timings[part] = time.perf_counter() - began

        network = PodNetwork()
        try:
            network.create()
            self._stops.append(network.destroy)
            # The API server is reached by pods at the node's bridge address.
            self.plane = ControlPlane(self.workdir / "plane", assets or Assets.provide(),
                                      with_controllers=True, advertise_address=network.gateway)  # fmt: skip
            self.plane.start()
            self._stops.append(self.plane.stop)
            up("control plane")
            self.api = config.new_client_from_config(config_file=str(self.plane.kubeconfig))
            controllers = Controllers(self.plane, self.workdir / "controllers")
            controllers.start()
            self._stops.append(controllers.stop)
            up("controller-manager and scheduler")
            manager = KServe(self.plane, self.workdir / "kserve")
            manager.start()
            self._stops.append(manager.stop)
            up("KServe's manager serving webhooks")
            self.gateway = Traefik(self.plane, self.api, GATEWAY, self.workdir / "traefik")
            self.gateway.start()
            self._stops.append(self.gateway.stop)
            self.prometheus = self._prometheus(network.gateway)
            self._stops.append(self.prometheus.stop)
            self.agent = NodeAgent(self.api, self.node, self.workdir / "node", network,
                                   self.plane.assets.crd_dir)  # fmt: skip
            self.agent.start()
            self._stops.append(self.agent.stop)
            for runtime in (OUR_RUNTIME, config_dir(self.plane) / "kserve-tritonserver.yaml"):
                self.plane.kubectl("apply", "--server-side", "-f", str(runtime))
            up("gateway, Prometheus, node and runtimes")
        except BaseException:
            self.stop()
            raise

    def _prometheus(self, host: str) -> Prometheus:
        """Prometheus discovering pods as the ServiceAccount ``monitoring/prometheus``, whose
        ClusterRole reads pods and nothing else."""
        for doc in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "prometheus", "namespace": "monitoring"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "prometheus-pods"}, "rules": [READ_PODS]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "prometheus-pods"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "prometheus-pods"},
             "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]},
        ):  # fmt: skip
            self.plane.apply(doc)
        folder = self.workdir / "prometheus"
        token_file = account_token(self.api, "monitoring", "prometheus", folder / "token")
        scrape = cluster_pods(self.api.configuration.host, self.api.configuration.ssl_ca_cert,
                              token_file)  # fmt: skip
        return Prometheus.start(self.plane.assets, folder, scrape, host=host,
                                binary="prometheus-kubernetes")  # fmt: skip

    def stop(self) -> None:
        while self._stops:
            self._stops.pop()()

    def namespace(self, name: str) -> None:
        """Namespace ``name``, made if missing. One of that name still terminating (an earlier
        test's: ``on_kserve`` does not wait for the namespace controller) takes no new content,
        so it is waited for first."""
        core = client.CoreV1Api(self.api)

        def terminating() -> bool:
            try:
                return core.read_namespace(name).metadata.deletion_timestamp is not None
            except ApiException as err:
                if err.status == 404:
                    return False
                raise

        wait_until(f"namespace {name} deleted", lambda: not terminating(), timeout=120)
        try:
            core.create_namespace({"metadata": {"name": name}})
        except ApiException as err:
            if err.status != 409:
                raise

    def claim(self, namespace: str, name: str, mode: int = 0o755) -> Path:
        """A PersistentVolumeClaim ``name`` in ``namespace`` (made if missing), bound to a
        hostPath volume of its own; its folder on the node. ``mode`` 0o777 lets pods of any
        user write to it, as a provisioner's ``fsGroup`` handling would."""
        core = client.CoreV1Api(self.api)
        self.namespace(namespace)
        volume = f"{name}-{namespace}"
        root = self.pvc_root / name
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(mode)
        core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                     "hostPath": {"path": str(root)}, "storageClassName": "",
                     "claimRef": {"namespace": namespace, "name": name}}})  # fmt: skip
        core.create_namespaced_persistent_volume_claim(namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "volumeName": volume, "resources": {"requests": {"storage": "1Gi"}}}})  # fmt: skip
        return root

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The pinned ``helm`` with this cluster's kubeconfig."""
        command = [self.plane.assets.binary("helm"), "--kubeconfig", str(self.plane.kubeconfig)]
        return subprocess.run([*command, *args], capture_output=True, text=True, check=False)

    def install_chart(self, store: str, watched: str, timeout: float = 120) -> str:
        """``helm install`` of ``charts/modeldeploy`` (release ``modeldeploy`` in
        ``modeldeploy-system``), watching ``watched``, its artifact store ``store`` on the
        ``artifacts`` claim; helm's output once the operator's Deployment is available."""
        self.claim(CHART_NAMESPACE, "artifacts", mode=0o777)
        installed = self.helm(
            "install", RELEASE, str(CHART), "-n", CHART_NAMESPACE, "--take-ownership",
            "--set", f"artifactStore.uri={store}", "--set", f"watchNamespaces={{{watched}}}",
            "--wait", f"--timeout={timeout:.0f}s",
        )  # fmt: skip
        if installed.returncode != 0:
            raise RuntimeError(f"helm install failed: {installed.stderr}")
        return installed.stdout.split("NOTES:")[0].strip()
