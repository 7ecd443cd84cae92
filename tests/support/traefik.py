"""Traefik v3 as the cluster's Gateway API implementation: the controller that accepts the
HTTPRoutes attached to KServe's Gateway, and the proxy that routes by them.

The binary is Traefik's own ``cmd/traefik`` at the version pinned in
``hack/envtest/traefik/go.mod``, built by ``hack/envtest/setup.sh`` (which says what it
substitutes for the three modules the Go proxy refuses). It runs as a process on the node, as a
``hostNetwork`` Traefik pod would, with its Kubernetes Gateway provider on:

- **Its RBAC is Traefik's own.** The ClusterRole in Traefik's
  ``kubernetes-gateway-rbac.yml`` (read from the same module version) is bound to a
  ServiceAccount ``traefik/traefik``, and Traefik talks to the API server with that account's
  token from the TokenRequest API, so it can do exactly what that Role allows.
- **The Gateway is KServe's.** The GatewayClass ``traefik`` names Traefik's controller
  (``traefik.io/gateway-controller``); KServe's Gateway (``kserve/kserve-ingress-gateway``,
  named in its ingress config) has one HTTP listener. Traefik maps a listener to the entry point
  on the same port, so the listener's port is the port the entry point listens on, on
  127.0.0.1. Traefik reports the Gateway Programmed at that address and writes each attached
  HTTPRoute's ``status.parents``, which is what KServe reads for IngressReady.
- **Traffic goes to pod IPs.** For a Service backend Traefik reads its EndpointSlices and
  balances over the ready endpoints' addresses (weighted round-robin between a rule's
  backendRefs), which it reaches over the node's pod network.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support import controlplane
from tests.support.controlplane import ControlPlane

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
CONTROLLER = "traefik.io/gateway-controller"
CLASS = "traefik"
NAMESPACE = ACCOUNT = "traefik"
ENTRY_POINT = "web"


def rbac(source: Path) -> list[dict[str, Any]]:
    """Traefik's Gateway ClusterRole and its binding, the binding's subject our ServiceAccount."""
    docs = [d for d in yaml.safe_load_all(source.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "ClusterRoleBinding":
            doc["subjects"] = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]
    return docs


def gateway_objects(gateway: str, port: int) -> list[dict[str, Any]]:
    """The GatewayClass for Traefik's controller and KServe's Gateway, its one HTTP listener on
    ``port`` (the entry point's port) and open to routes from every namespace."""
    namespace, name = gateway.split("/")
    return [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "GatewayClass", "metadata": {"name": CLASS},
         "spec": {"controllerName": CONTROLLER}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway",
         "metadata": {"name": name, "namespace": namespace},
         "spec": {"gatewayClassName": CLASS, "listeners": [
             {"name": "http", "protocol": "HTTP", "port": port,
              "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]  # fmt: skip


def arguments(port: int, server: str, token: Path, ca: Path) -> list[str]:
    """Traefik's static configuration, as flags."""
    return [
        f"--entryPoints.{ENTRY_POINT}.address=127.0.0.1:{port}",
        # Each change applied as it comes. Traefik's default (2 s) sends a change, then holds
        # the next for 2 s: the first seconds of a canary step would run at the last weights.
        "--providers.providersThrottleDuration=0s",
        "--providers.kubernetesGateway=true",
        f"--providers.kubernetesGateway.endpoint={server}",
        f"--providers.kubernetesGateway.token={token}",
        f"--providers.kubernetesGateway.certAuthFilePath={ca}",
        "--providers.kubernetesGateway.statusAddress.ip=127.0.0.1",
        "--log.level=INFO",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
    ]


class Traefik:
    """Traefik serving ``gateway`` (``namespace/name``) for the cluster ``plane``."""

    def __init__(self, plane: ControlPlane, api: client.ApiClient, gateway: str,
                 workdir: Path) -> None:  # fmt: skip
        self.plane, self.api, self.gateway, self.workdir = plane, api, gateway, workdir
        self.port = controlplane.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "traefik.log"

    def start(self, timeout: float = 60.0) -> None:
        """Traefik's RBAC and account, the GatewayClass and Gateway, then Traefik; returns once
        Traefik reports the Gateway Programmed."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.plane.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": ACCOUNT, "namespace": NAMESPACE}})  # fmt: skip
        for doc in rbac(self.plane.assets.crd_dir / "traefik" / "kubernetes-gateway-rbac.yml"):
            self.plane.apply(doc)
        for doc in gateway_objects(self.gateway, self.port):
            self.plane.apply(doc)
        token = controlplane.account_token(self.api, NAMESPACE, ACCOUNT, self.workdir / "token")
        self.process = controlplane.start_process(
            [self.plane.assets.binary("traefik"),
             *arguments(self.port, self.api.configuration.host, token,
                        Path(self.api.configuration.ssl_ca_cert))],
            self.log,
        )  # fmt: skip
        self._wait_programmed(self.process, timeout)

    def stop(self) -> None:
        if self.process is not None:
            controlplane.stop_group(self.process, grace=5.0)

    def _wait_programmed(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        namespace, name = self.gateway.split("/")
        custom = client.CustomObjectsApi(self.api)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"traefik exited ({process.returncode}); see {self.log}")
            try:
                found = custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                            "gateways", name)  # fmt: skip
            except ApiException as err:
                if err.status != 404:
                    raise
                found = {}
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Programmed" and c["status"] == "True" for c in conditions):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"traefik did not program {self.gateway} in {timeout:.0f} s: "
                                   f"{conditions}; see {self.log}")  # fmt: skip
            time.sleep(0.2)
