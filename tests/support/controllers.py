"""kube-controller-manager and kube-scheduler for a test control plane: the Deployment,
ReplicaSet, Job, EndpointSlice, garbage-collector and service-account controllers, and the real
scheduler, from the same ``k8s.io/kubernetes`` module as the API server (built by
``hack/envtest/setup.sh``).

The node lifecycle controller is off: it would taint a Node whose kubelet sends no heartbeat,
and the node here is run by the node agent (``tests/support/kubelet``), which sends none.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.controlplane import (
    ControlPlane,
    ControlPlaneError,
    _tail,
    free_port,
    start_process,
    stop_group,
)

CONTROLLERS = (
    "*",
    # A kubelet's heartbeat is what keeps a Node untainted; no kubelet runs here.
    "-node-lifecycle-controller",
)


@dataclass
class Controllers:
    """The two processes, against ``plane``, until ``stop``."""

    plane: ControlPlane
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.plane.workdir / "pki"
        kubeconfig = str(self.plane.kubeconfig)
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        self.ports = {"kube-controller-manager": free_port(), "kube-scheduler": free_port()}
        self._spawn(
            "kube-controller-manager",
            [
                *common,
                f"--secure-port={self.ports['kube-controller-manager']}",
                f"--cert-dir={self.workdir / 'kube-controller-manager-certs'}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                *common,
                f"--secure-port={self.ports['kube-scheduler']}",
                f"--cert-dir={self.workdir / 'kube-scheduler-certs'}",
            ],
        )
        self._wait_healthy(timeout)

    def _spawn(self, name: str, args: list[str]) -> None:
        self.processes[name] = start_process(
            [self.plane.assets.binary(name), *args], self.workdir / f"{name}.log"
        )

    def _wait_healthy(self, timeout: float) -> None:
        """Until both answer /healthz (served on their own self-signed certificates)."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        waiting = set(self.processes)
        while waiting:
            for name in sorted(waiting):
                if self.processes[name].poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited:\n{_tail(self.workdir / f'{name}.log')}"
                    )
                url = f"https://127.0.0.1:{self.ports[name]}/healthz"
                try:
                    with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                        if answer.status == 200:
                            waiting.discard(name)
                except OSError:
                    pass
            if waiting and time.monotonic() > deadline:
                logs = "\n".join(_tail(self.workdir / f"{n}.log") for n in sorted(waiting))
                raise ControlPlaneError(f"not healthy: {sorted(waiting)}\n{logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_group(process)
        self.processes.clear()
