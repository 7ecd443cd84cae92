"""The rules the cluster's stand-ins follow, on their own: the Service rules the node agent
writes into pods, probe thresholds, restart policy and the image table's command rules
(``tests/support/kubelet``). The cluster
tests run them for real; these pin the rules where the spec is subtle."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.kubelet import dns, images
from tests.support.kubelet.pods import restarts
from tests.support.kubelet.probes import Kind, ProbeState
from tests.support.kubelet.services import ServicePort, get_rules, service_ports


def _service(name: str, ip: str, ports: list[tuple[str, int]]) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace="ns", name=name),
        spec=SimpleNamespace(cluster_ip=ip, ports=[SimpleNamespace(name=n, port=p, protocol="TCP")
                                                   for n, p in ports]),
    )  # fmt: skip


def _slice(service: str, port: tuple[str, int], *endpoints: tuple[str, bool]) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(namespace="ns", labels={"kubernetes.io/service-name": service}),
        ports=[SimpleNamespace(name=port[0], port=port[1])],
        endpoints=[SimpleNamespace(addresses=[a], conditions=SimpleNamespace(ready=r))
                   for a, r in endpoints],
    )  # fmt: skip


def test_service_rules_spread_connections_evenly_over_ready_endpoints_and_reject_without_any() -> (
    None
):
    ports = service_ports(
        [_service("web", "10.0.0.9", [("http", 80)]), _service("none", "10.0.0.8", [("", 81)]),
         _service("headless", "None", [("http", 80)])],
        [_slice("web", ("http", 8080), ("10.245.1.2", True), ("10.245.1.3", True),
                ("10.245.1.4", False), ("10.245.1.5", True))],
    )  # fmt: skip
    assert ports == [
        ServicePort("10.0.0.8", 81, "tcp", ()),
        ServicePort("10.0.0.9", 80, "tcp", (("10.245.1.2", 8080), ("10.245.1.3", 8080),
                                            ("10.245.1.5", 8080))),
    ]  # fmt: skip
    rules = get_rules(ports).splitlines()
    dnat = [r for r in rules if "DNAT" in r]
    assert ["0.33333333333" in dnat[0], "0.50000000000" in dnat[1], "statistic" in dnat[2]] == [
        True, True, False]  # fmt: skip
    assert dnat[2].endswith("--to-destination 10.245.1.5:8080")
    assert any("-d 10.0.0.8/32" in r and "REJECT" in r for r in rules)


@pytest.mark.parametrize(
    ("results", "threshold", "expected"),
    [([False, False], 3, False), ([False, False, False], 3, False), ([True], 1, True),
     ([True, False, True], 2, False), ([True, True], 2, True)],
)  # fmt: skip
def test_a_readiness_probe_flips_only_after_its_threshold_in_a_row(
    results: list[bool], threshold: int, expected: bool
) -> None:
    state = ProbeState(Kind.READINESS, {"successThreshold": threshold, "failureThreshold": 3}, 0)
    for i, ok in enumerate(results):
        state.record(float(i), ok, "")
    assert state.result is expected


def test_liveness_starts_as_success_and_fails_after_its_failure_threshold() -> None:
    state = ProbeState(Kind.LIVENESS, {"failureThreshold": 2, "periodSeconds": 5}, 0)
    assert state.result is True
    assert not state.due(-1)
    state.record(0, False, "HTTP probe failed with statuscode: 500")
    assert state.result is True
    assert not state.due(4)
    assert state.due(5)
    state.record(5, False, "HTTP probe failed with statuscode: 500")
    assert state.result is False


def test_restart_policy_decides_which_exits_restart() -> None:
    assert [restarts(p, c) for p in ("Always", "OnFailure", "Never") for c in (0, 1)] == [
        True, True, False, True, False, False]  # fmt: skip


def test_command_replaces_the_entrypoint_and_args_replace_the_cmd() -> None:
    image = images.lookup("ghcr.io/modeldeploy/onnx-runtime:0.1.0-cuda12")
    assert images.argv(image, None, None) == ["modeldeploy", "serve", "/mnt/models"]
    assert images.argv(image, None, ["serve", "/m"]) == ["modeldeploy", "serve", "/m"]
    assert images.argv(image, ["python", "-c", "1"], None) == ["python", "-c", "1"]
    assert images.repository("reg:5000/a/b@sha256:00") == "reg:5000/a/b"
    with pytest.raises(images.ImageNotFoundError, match=r"nvcr\.io/nvidia/tritonserver"):
        images.lookup("nvcr.io/nvidia/tritonserver:24.01-py3")


def _query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        "!HH", qtype, 1)  # fmt: skip


def test_cluster_dns_answers_service_names_with_their_cluster_ip_and_nothing_else() -> None:
    services = {("ml", "web"): "10.0.0.7"}

    def lookup(namespace: str, name: str) -> str | None:
        return services.get((namespace, name))

    found = dns.answer(_query("web.ml.svc.cluster.local"), lookup)
    ident, flags, questions, answers = struct.unpack("!HHHH", found[:8])
    assert (ident, flags & 0x800F, questions, answers) == (0x1234, 0x8000, 1, 1)
    assert found[-4:] == bytes([10, 0, 0, 7])
    assert struct.unpack("!I", found[-10:-6])[0] == dns.TTL
    # Another type of a known name: no records, no error. Unknown names: NXDOMAIN.
    flags, _, answers = struct.unpack("!HHH", dns.answer(_query("web.ml.svc.cluster.local", 28),
                                                          lookup)[2:8])  # fmt: skip
    assert (flags & 0xF, answers) == (dns.NOERROR, 0)
    for name in ("db.ml.svc.cluster.local", "web.ml.svc.cluster.local.example.com", "example.com"):
        assert struct.unpack("!H", dns.answer(_query(name), lookup)[2:4])[0] & 0xF == dns.NXDOMAIN
    assert struct.unpack("!H", dns.answer(b"\x12\x34\x01", lookup)[2:4])[0] & 0xF == dns.FORMERR
    assert dns.resolv_conf("10.245.3.1", "ml").splitlines() == [
        "nameserver 10.245.3.1", "search ml.svc.cluster.local svc.cluster.local cluster.local",
        "options ndots:5"]  # fmt: skip
