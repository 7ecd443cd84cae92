"""Service ClusterIPs inside pods: a stand-in for kube-proxy, kept per pod network namespace.

kube-proxy (iptables mode) rewrites a connection to a Service's ClusterIP and port into one to a
ready endpoint, picked at random with equal odds (``-m statistic --mode random``), from the
Service's EndpointSlices. This does the same with the same rules, in the ``nat`` table's
``OUTPUT`` chain of each pod's own network namespace rather than in the node's: each cluster on
this machine then keeps its rules to its own pods, and the host's tables are never touched. A
Service with no ready endpoint rejects connections, as kube-proxy's ``filter`` rule does.

The ``kubernetes`` Service's endpoint is the API server's advertised address, the node's
bridge address (``tests/support/cluster.py``), so pods reach the API server as on a cluster.

The rules follow the API every second. ClusterIP names (cluster DNS) are not served.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tests.support.kubelet.network import PodNetwork, Sandbox
from tests.support.loops import every

log = logging.getLogger("node-agent")
CHAIN = "MDK-SERVICES"


@dataclass(frozen=True)
class ServicePort:
    cluster_ip: str
    port: int
    protocol: str
    endpoints: tuple[tuple[str, int], ...]


def service_ports(services: list[Any], slices: list[Any]) -> list[ServicePort]:
    """Each ClusterIP Service port with its ready endpoints (address, target port)."""
    by_service: dict[tuple[str, str], list[Any]] = {}
    for piece in slices:
        owner = (piece.metadata.labels or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((piece.metadata.namespace, owner), []).append(piece)
    found = []
    for service in services:
        ip = service.spec.cluster_ip
        if not ip or ip == "None":
            continue
        for port in service.spec.ports or []:
            endpoints = []
            for piece in by_service.get((service.metadata.namespace, service.metadata.name), []):
                number = next((p.port for p in piece.ports or []
                               if (p.name or "") == (port.name or "")), None)  # fmt: skip
                if number is None:
                    continue
                endpoints += [(e.addresses[0], int(number)) for e in piece.endpoints or []
                              if e.conditions is None or e.conditions.ready is not False]  # fmt: skip
            found.append(ServicePort(ip, int(port.port), (port.protocol or "TCP").lower(),
                                     tuple(sorted(endpoints))))  # fmt: skip
    return sorted(found, key=lambda p: (p.cluster_ip, p.port, p.protocol))


def get_rules(ports: list[ServicePort]) -> str:
    """The ``iptables-restore`` input for one pod's namespace."""
    nat = ["*nat", f":{CHAIN} - [0:0]", f"-A OUTPUT -j {CHAIN}"]
    reject = ["*filter", f":{CHAIN} - [0:0]", f"-A OUTPUT -j {CHAIN}"]
    for entry in ports:
        match = (
            f"-d {entry.cluster_ip}/32 -p {entry.protocol} -m {entry.protocol} --dport {entry.port}"
        )
        if not entry.endpoints:
            reject.append(f"-A {CHAIN} {match} -j REJECT --reject-with icmp-port-unreachable")
            continue
        for i, (address, port) in enumerate(entry.endpoints):
            left = len(entry.endpoints) - i
            odds = f"-m statistic --mode random --probability {1 / left:.11f} " if left > 1 else ""
            nat.append(f"-A {CHAIN} {match} {odds}-j DNAT --to-destination {address}:{port}")
    return "\n".join([*nat, "COMMIT", *reject, "COMMIT", ""])


class ServiceProxy:
    def __init__(self, api: client.ApiClient, network: PodNetwork) -> None:
        self.core, self.discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
        self.network = network
        self._rules = ""
        self._applied: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        if shutil.which("iptables-restore") is None:
            # Without it every pod's Service ClusterIPs would silently lead nowhere: fail here,
            # with the fix, rather than later as a timeout in some test's request.
            raise RuntimeError("iptables-restore not found: `make envtest` installs Debian's "
                               "iptables as root; otherwise install it by hand")  # fmt: skip
        self.sync()
        threading.Thread(target=every, args=(1, self._stop, self.sync, "syncing Service rules"),
                         daemon=True, name="service-proxy").start()  # fmt: skip

    def stop(self) -> None:
        self._stop.set()

    def sync(self) -> None:
        ports = service_ports(
            self.core.list_service_for_all_namespaces().items,
            self.discovery.list_endpoint_slice_for_all_namespaces().items,
        )
        with self._lock:
            self._rules = get_rules(ports)
            sandboxes = list(self.network.sandboxes.values())
        for sandbox in sandboxes:
            self.apply_to(sandbox)

    def apply_to(self, sandbox: Sandbox) -> None:
        """The current rules into one pod's namespace (a new pod's, before its containers)."""
        with self._lock:
            rules = self._rules
            if self._applied.get(sandbox.netns) == rules:
                return
            done = subprocess.run(
                ["ip", "netns", "exec", sandbox.netns, "iptables-restore"], input=rules,
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                log.warning("rules for %s: %s", sandbox.netns, done.stderr.strip())
                return
            self._applied[sandbox.netns] = rules
