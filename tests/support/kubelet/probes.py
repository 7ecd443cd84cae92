"""Container probes, with the kubelet's semantics (``pkg/kubelet/prober``):

- a probe first runs ``initialDelaySeconds`` after the container started, then every
  ``periodSeconds``, each try bounded by ``timeoutSeconds``;
- its result flips to success after ``successThreshold`` successes in a row, and to failure
  after ``failureThreshold`` failures in a row;
- results start as failure for readiness, success for liveness and unknown for startup; while a
  startup probe has not succeeded, the others do not run;
- ``httpGet`` succeeds on a status from 200 to 399, ``tcpSocket`` when it connects, ``exec``
  when the command exits 0 in the container's namespaces, as its user. ``grpc`` probes are not
  supported by this stand-in and fail, saying so.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    STARTUP = "startup"
    LIVENESS = "liveness"
    READINESS = "readiness"


INITIAL: dict[Kind, bool | None] = {Kind.STARTUP: None, Kind.LIVENESS: True, Kind.READINESS: False}


def port_of(value: int | str, container: dict[str, Any]) -> int:
    """A port given by number or by the name of one of the container's ports."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f'port "{value}" names none of the container\'s ports')


def check(probe: dict[str, Any], ip: str, container: dict[str, Any], pid: int | None,
          user: tuple[int | None, int | None]) -> tuple[bool, str]:  # fmt: skip
    """One try: whether it succeeded, and the kubelet's message when it did not."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if get := probe.get("httpGet"):
            host, port = get.get("host") or ip, port_of(get["port"], container)
            scheme = str(get.get("scheme") or "HTTP").upper()
            factory = (
                http.client.HTTPSConnection if scheme == "HTTPS" else http.client.HTTPConnection
            )
            conn = factory(host, port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.36")
            try:
                conn.request("GET", get.get("path") or "/", headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
            if 200 <= status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {status}"
        if tcp := probe.get("tcpSocket"):
            with socket.create_connection((tcp.get("host") or ip, port_of(tcp["port"], container)),
                                          timeout=timeout):  # fmt: skip
                return True, ""
        if command := (probe.get("exec") or {}).get("command"):
            if pid is None:
                return False, "the container is not running"
            uid, gid = user
            enter = ["nsenter", "-t", str(pid), "-m", "-n"]
            enter += [f"-S{uid}"] if uid is not None else []
            enter += [f"-G{gid}"] if gid is not None else []
            done = subprocess.run([*enter, *command], capture_output=True, text=True,
                                  timeout=timeout, check=False)  # fmt: skip
            return done.returncode == 0, (done.stdout + done.stderr)[-1024:]
        return False, f"probe handler {sorted(probe)} is not supported by the node agent"
    except (OSError, subprocess.TimeoutExpired, http.client.HTTPException, ValueError) as err:
        return False, f"probe failed: {err}"


@dataclass
class ProbeState:
    """One probe of one container, since the container started at ``started``."""

    kind: Kind
    probe: dict[str, Any]
    started: float
    result: bool | None = field(init=False)
    last_run: float | None = None
    successes: int = 0
    failures: int = 0
    message: str = ""

    def __post_init__(self) -> None:
        self.result = INITIAL[self.kind]

    def due(self, now: float) -> bool:
        if now < self.started + float(self.probe.get("initialDelaySeconds") or 0):
            return False
        period = float(self.probe.get("periodSeconds") or 10)
        return self.last_run is None or now >= self.last_run + period

    def record(self, now: float, ok: bool, message: str) -> None:
        self.last_run = now
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold") or 1):
                self.result = True
        else:
            self.successes, self.failures, self.message = 0, self.failures + 1, message
            if self.failures >= int(self.probe.get("failureThreshold") or 3):
                self.result = False


def states(container: dict[str, Any], started: float) -> dict[Kind, ProbeState]:
    return {
        kind: ProbeState(kind, container[f"{kind}Probe"], started)
        for kind in Kind
        if container.get(f"{kind}Probe")
    }
