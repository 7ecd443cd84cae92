"""Pod networking, as a CNI bridge plugin does it: a Linux bridge on the host with the node's pod
subnet, and for each pod a network namespace of its own, joined to the bridge by a veth pair,
with an address from the subnet and a default route through the bridge.

The host reaches every pod at its IP, as a node does; pods reach each other and the host's
bridge address. Service ClusterIPs are routed inside each pod's namespace by ``services.py``. Needs root, as a
CNI plugin does.
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess
import threading
from dataclasses import dataclass, field

PREFIX = "mdk"
"""Interface and namespace names start with it: ``mdk<pid>`` is one agent's bridge."""
POD_RANGE = ipaddress.IPv4Network("10.245.0.0/16")
"""Each agent takes a free /24 of it, so agents of runs that overlap do not clash."""


class NetworkError(RuntimeError):
    """A sandbox could not be set up; the message carries the command and its error."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Sandbox:
    """One pod's network: its namespace, and its address on the bridge."""

    netns: str
    ip: str
    host_veth: str


@dataclass
class PodNetwork:
    bridge: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    subnet: ipaddress.IPv4Network = field(init=False)
    sandboxes: dict[str, Sandbox] = field(init=False, default_factory=dict)
    """The pods' namespaces now, by name."""
    _free: list[ipaddress.IPv4Address] = field(init=False, default_factory=list)
    _next: int = field(init=False, default=0)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def create(self) -> None:
        """The bridge, on a /24 no other bridge here uses. Leftovers of agents that died
        without cleaning up (their pid is gone) are removed first."""
        remove_orphans()
        used = {
            ipaddress.ip_interface(word).network
            for line in _ip("-o", "-4", "addr", "show").stdout.splitlines()
            for word in line.split()
            if "/" in word and word[0].isdigit()
        }
        free = [n for n in POD_RANGE.subnets(new_prefix=24) if n not in used]
        self.subnet = ipaddress.IPv4Network(random.choice(free[1:]))
        self._free = list(self.subnet.hosts())[1:]  # .1 is the bridge's
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def sandbox(self) -> Sandbox:
        """A new pod's namespace, with ``lo`` up and ``eth0`` on the bridge."""
        with self._lock:
            address = self._free.pop(0)
            self._next += 1
            n = self._next
        netns, veth = f"{self.bridge}-{n}", f"{self.bridge}v{n}"
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "route", "add", "default", "via", self.gateway)
        sandbox = Sandbox(netns, str(address), veth)
        with self._lock:
            self.sandboxes[netns] = sandbox
        return sandbox

    def release(self, sandbox: Sandbox) -> None:
        """Delete the namespace (its veth goes with it) and free its address."""
        _ip("netns", "delete", sandbox.netns, check=False)
        with self._lock:
            self.sandboxes.pop(sandbox.netns, None)
            self._free.append(ipaddress.ip_address(sandbox.ip))  # type: ignore[arg-type]

    def destroy(self) -> None:
        for netns in _ip("netns", "list").stdout.split():
            if netns.startswith(f"{self.bridge}-"):
                _ip("netns", "delete", netns, check=False)
        _ip("link", "delete", self.bridge, check=False)


def remove_orphans() -> None:
    """Bridges and namespaces of agents whose process is gone."""
    for line in _ip("-o", "link", "show", "type", "bridge").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        owner = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            PodNetwork(bridge=name).destroy()
    for netns in _ip("netns", "list").stdout.split():
        owner = netns.removeprefix(PREFIX).split("-")[0]
        if netns.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            _ip("netns", "delete", netns, check=False)
