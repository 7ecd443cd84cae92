"""Two operator replicas never write at once (issue 16, item 8): leader election by a
``coordination.k8s.io`` Lease, with two real operator processes against the real API server."""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client

from tests.operator.conftest import Kube, digits_spec
from tests.support.controlplane import free_port


def reconciliations(port: int) -> float:
    """The replica's ``modeldeploy_operator_reconciliations_total`` (every result): each one a
    round of writes to one object."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modeldeploy_operator_reconciliations_total{")
    )


def stamp(value: Any) -> datetime:
    return (
        value
        if isinstance(value, datetime)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )


def test_two_replicas_with_a_lease_write_one_at_a_time_and_the_survivor_takes_over(
    kube: Kube,
    start_operator,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    """``--leader-election``, as the Helm chart passes it with replicas > 1: only the holder of
    the Lease reconciles; when it is SIGKILLed (a node gone, no clean-up), the other takes the
    Lease once it expires, and carries on."""
    leases = client.CoordinationV1Api(api_client)
    duration = 6
    election = ("--leader-election", "--lease-name", "md-test", "--lease-namespace", namespace,
                "--lease-duration", str(duration))  # fmt: skip
    ports = [free_port(), free_port()]
    replicas = [start_operator(*election, "--metrics-port", str(p)) for p in ports]

    def holder() -> str | None:
        try:
            return leases.read_namespaced_lease("md-test", namespace).spec.holder_identity
        except client.ApiException:
            return None

    kube.wait("a leader", lambda: holder() is not None)
    kube.create("first", digits_spec())
    kube.wait_condition("first", "Ready", "True", timeout=180)
    counts = [reconciliations(p) for p in ports]
    # One replica wrote everything; the other not once.
    leader = next(i for i, c in enumerate(counts) if c > 0)
    assert counts[1 - leader] == 0, counts
    first_holder = holder()
    assert first_holder is not None
    assert f"{first_holder} leads" in replicas[leader].log_text()

    before = leases.read_namespaced_lease("md-test", namespace).spec
    replicas[leader].kill()  # SIGKILL: the Lease is not given up, it has to expire
    kube.create("second", digits_spec())
    kube.wait_condition("second", "Ready", "True", timeout=180)
    after = leases.read_namespaced_lease("md-test", namespace).spec
    assert after.holder_identity not in (None, first_holder)
    assert after.lease_transitions == (before.lease_transitions or 0) + 1
    # Taken over once the Lease had expired, not before, and not long after (a few renewals).
    expired = stamp(before.renew_time) + timedelta(seconds=duration)
    assert expired <= stamp(after.acquire_time) <= expired + timedelta(seconds=duration)
    assert reconciliations(ports[1 - leader]) > 0
