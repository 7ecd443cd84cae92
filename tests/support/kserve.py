"""KServe's own controller manager against a test control plane: the real reconcile and the real
webhooks, in Standard mode with Gateway API on.

The manager is ``github.com/kserve/kserve/cmd/manager`` at the version pinned in
``hack/envtest/versions.env``, built by ``hack/envtest/setup.sh``. It is configured from KServe's
own files at that version (``config/configmap/inferenceservice.yaml``, its webhook manifests, the
default ClusterStorageContainer), with only what a cluster install sets changed:

- ``deploy.defaultDeploymentMode``: Standard (KServe's name for raw Deployments);
- ``ingress``: Gateway API on (HTTPRoutes, not Ingresses), through
  ``kserve/kserve-ingress-gateway``, and no Istio VirtualService;
- the webhooks: KServe's paths and rules, each reached at ``https://127.0.0.1:<port>`` and
  trusted through the control plane's CA, as KServe's own envtest registers them (its manifests
  name a Service, which needs a cluster network).

The webhook server's certificate is the API server's own (it names 127.0.0.1). Nothing about
what KServe does with an InferenceService is simulated. ``tests/support/cluster.py`` runs it with
the controllers, a gateway and a node, so its Deployments become pods that serve.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support import controlplane
from tests.support.controlplane import ControlPlane, ControlPlaneError

NAMESPACE = "kserve"
"""Where KServe's manager reads its ConfigMap from (its POD_NAMESPACE)."""
GATEWAY = "kserve/kserve-ingress-gateway"
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:latest"
"""What KServe's kustomization names for its placeholder, as ``inferenceservice-config`` does."""


def config_dir(plane: ControlPlane) -> Path:
    """KServe's own configuration files at the pinned version, copied by ``setup.sh``."""
    return plane.assets.crd_dir / "kserve"


def inferenceservice_config(source: Path) -> dict[str, Any]:
    """KServe's ``inferenceservice-config``, switched to Standard mode and the Gateway API."""
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    data = config["data"]
    data.pop("_example", None)
    data["deploy"] = json.dumps({"defaultDeploymentMode": "Standard"})
    ingress = json.loads(data["ingress"])
    ingress.update(enableGatewayApi=True, kserveIngressGateway=GATEWAY,
                   disableIstioVirtualHost=True)  # fmt: skip
    data["ingress"] = json.dumps(ingress)
    return config


def storage_container(source: Path) -> dict[str, Any]:
    """The default ClusterStorageContainer, its image placeholder replaced as KServe's
    kustomization (``config/storagecontainers/kustomization.yaml``) replaces it on install."""
    found: dict[str, Any] = yaml.safe_load(source.read_text())
    container = found["spec"]["container"]
    if container["image"].startswith("default-storage-initilizer:"):  # KServe's spelling
        container["image"] = STORAGE_INITIALIZER_IMAGE
    return found


def webhook_configurations(source: Path, port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """KServe's webhook configurations, each webhook reached at ``127.0.0.1:port``."""
    found = []
    for doc in yaml.safe_load_all(source.read_text()):
        if not doc:
            continue
        doc["metadata"].pop("creationTimestamp", None)
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{port}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
        found.append(doc)
    return found


@dataclass
class KServe:
    """KServe's manager, running against ``plane`` until ``stop``."""

    plane: ControlPlane
    workdir: Path
    webhook_port: int = 0
    probe_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.workdir / "kserve-manager.log"

    def start(self, timeout: float = 120.0) -> None:
        """Configure, register the webhooks, start the manager; return once it serves them."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = config_dir(self.plane)
        self.webhook_port, self.probe_port = controlplane.free_port(), controlplane.free_port()
        self.plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        self.plane.apply(inferenceservice_config(source / "inferenceservice.yaml"))
        self.plane.apply(storage_container(source / "default.yaml"))
        pki = self.plane.workdir / "pki"
        # controller-runtime reads its serving certificate from $TMPDIR/k8s-webhook-server/.
        certs = self.workdir / "tmp" / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pki / "apiserver.crt", certs / "tls.crt")
        shutil.copyfile(pki / "apiserver.key", certs / "tls.key")
        ca = (pki / "ca.crt").read_bytes()
        for doc in webhook_configurations(source / "manifests.yaml", self.webhook_port, ca):
            self.plane.apply(doc)
        self.process = controlplane.start_process(
            [
                self.plane.assets.binary("kserve-manager"),
                f"--webhook-port={self.webhook_port}",
                "--metrics-addr=0",
                f"--health-probe-addr=127.0.0.1:{self.probe_port}",
                "--leader-elect=false",
            ],
            self.log,
            env={
                **os.environ,
                "KUBECONFIG": str(self.plane.kubeconfig),
                "POD_NAMESPACE": NAMESPACE,
                "TMPDIR": str(self.workdir / "tmp"),
            },
        )
        self._wait_ready(timeout, ca)

    def _wait_ready(self, timeout: float, ca: bytes) -> None:
        """Until the manager's readiness probe answers and its webhook server completes a TLS
        handshake with the control plane's CA, as the API server will."""
        context = ssl.create_default_context(cadata=ca.decode())
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ControlPlaneError(f"KServe's manager exited:\n{controlplane._tail(self.log)}")
            try:
                url = f"http://127.0.0.1:{self.probe_port}/readyz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    ready = answer.status == 200
                with (
                    socket.create_connection(("127.0.0.1", self.webhook_port), timeout=2) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    pass
                if ready:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"KServe's manager not ready:\n{controlplane._tail(self.log)}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            controlplane.stop_group(self.process)
            self.process = None
