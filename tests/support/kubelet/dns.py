"""Cluster DNS, a stand-in for CoreDNS's ``kubernetes`` plugin: ``<service>.<namespace>.svc.
cluster.local`` resolves to the Service's ClusterIP, for the pods the node agent runs.

CoreDNS is not built here; what pods need of it is one record type. It answers A queries for
Service names (read from the API server at each query, so a Service made a moment ago
resolves), an empty answer for other types of those names, and NXDOMAIN for everything else:
pods here reach nothing outside the cluster. It listens on the bridge address (UDP 53), which
every pod's ``/etc/resolv.conf`` names, with the kubelet's search path for its namespace
(``resolv_conf``). Headless Services and pod records are not served.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

DOMAIN = "cluster.local"
TTL = 5
A, IN = 1, 1
NOERROR, FORMERR, NXDOMAIN = 0, 1, 3

log = logging.getLogger(__name__)


def resolv_conf(nameserver: str, namespace: str) -> str:
    """A pod's ``/etc/resolv.conf`` under ``dnsPolicy: ClusterFirst``, as the kubelet writes it."""
    search = f"{namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}"
    return f"nameserver {nameserver}\nsearch {search}\noptions ndots:5\n"


def parse_query(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of the question) of a one-question query."""
    if len(packet) < 12:
        raise ValueError("short header")
    ident, flags, questions = struct.unpack("!HHH", packet[:6])
    if questions != 1:
        raise ValueError(f"{questions} questions")
    labels, at = [], 12
    while True:
        if at >= len(packet):
            raise ValueError("name runs past the packet")
        length = packet[at]
        at += 1
        if length == 0:
            break
        if length > 63:
            raise ValueError("compressed or oversized label in a question")
        labels.append(packet[at : at + length].decode("ascii", "replace").lower())
        at += length
    if at + 4 > len(packet):
        raise ValueError("no question type")
    qtype, qclass = struct.unpack("!HH", packet[at : at + 4])
    if qclass != IN:
        raise ValueError(f"class {qclass}")
    return ident, flags, ".".join(labels), qtype, at + 4


def answer(packet: bytes, lookup: Callable[[str, str], str | None]) -> bytes:
    """The response to ``packet``; ``lookup(namespace, service)`` gives a ClusterIP or None."""
    try:
        ident, flags, name, qtype, end = parse_query(packet)
    except ValueError:
        ident = struct.unpack("!H", packet[:2])[0] if len(packet) >= 2 else 0
        return struct.pack("!HHHHHH", ident, 0x8000 | FORMERR, 0, 0, 0, 0)
    question = packet[12:end]
    address = None
    parts = name.split(".")
    if name.endswith(f".svc.{DOMAIN}") and len(parts) == 5:
        address = lookup(parts[1], parts[0])
    code = NOERROR if address else NXDOMAIN
    records = b""
    if address and qtype == A:
        records = (
            struct.pack("!HHHIH", 0xC00C, A, IN, TTL, 4) + ipaddress.IPv4Address(address).packed
        )
    header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | 0x0080 | code, 1,
                         1 if records else 0, 0, 0)  # fmt: skip
    return header + question + records


class ClusterDNS:
    """The DNS server of one node agent's cluster, on ``address`` port 53."""

    def __init__(self, api: client.ApiClient, address: str) -> None:
        self.core = client.CoreV1Api(api)
        self.address = address
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cluster-dns", daemon=True)

    def lookup(self, namespace: str, service: str) -> str | None:
        try:
            found = self.core.read_namespaced_service(service, namespace)
        except ApiException:
            return None
        ip = found.spec.cluster_ip
        return None if not ip or ip == "None" else str(ip)

    def start(self) -> None:
        self._socket.bind((self.address, 53))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                packet, peer = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._socket.sendto(answer(packet, self.lookup), peer)
            except OSError as err:
                log.warning("cluster DNS: no answer to %s: %s", peer, err)
