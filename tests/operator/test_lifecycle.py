"""Deletion and crash recovery: the finalizer releases artifacts (keeping shared ones), and an
operator SIGKILLed in the middle of staging converges after a restart without a second Job."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from modeldeploy.testing.controlplane import free_port
from tests.operator.conftest import Kube, digits_spec


def store_keys(store: Path) -> set[str]:
    return (
        {p.name for p in store.iterdir() if not p.name.startswith(".")} if store.exists() else set()
    )


@pytest.fixture
def second_namespace(api_client: client.ApiClient, namespace: str) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = f"{namespace}-b"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_each_namespace_stages_its_own_copy_and_deleting_releases_only_its_own(
    kube: Kube,
    start_operator,  # type: ignore[no-untyped-def]
    store_dir: Path,
    api_client: client.ApiClient,
    namespace: str,
    second_namespace: str,
) -> None:
    other = Kube(api_client, second_namespace)
    other_dir = store_dir.parent / second_namespace
    start_operator(namespaces=[namespace, second_namespace])
    kube.create("digits", digits_spec())
    kube.wait_condition("digits", "Ready", "True")
    key = kube.get("digits")["status"]["artifact"]["key"]  # type: ignore[index]
    assert key in store_keys(store_dir)
    assert (store_dir / ".owners" / key / f"{namespace}.digits").exists()

    # The same model and options in another namespace: the same content key, but no cache hit
    # on the first namespace's artifact. It is staged again, under its own prefix.
    other.create("digits", digits_spec())
    staged = other.wait_condition("digits", "ArtifactReady", "True", "Staged", timeout=180)
    assert key in staged["message"]
    assert other.get("digits")["status"]["artifact"]["uri"].endswith(f"/{second_namespace}/{key}")  # type: ignore[index]
    assert key in store_keys(other_dir)
    assert not (store_dir / ".owners" / key / f"{second_namespace}.digits").exists()

    # A spec change leaves a second artifact, in the first namespace only.
    kube.patch_spec("digits", {"serving": {"batching": {"maxBatchSize": 4}}})
    kube.wait(
        "the second artifact",
        lambda: kube.get("digits")["status"]["artifact"]["key"] != key,  # type: ignore[index]
        timeout=180,
    )
    second_key = kube.get("digits")["status"]["artifact"]["key"]  # type: ignore[index]
    assert {key, second_key} <= store_keys(store_dir)
    assert second_key not in store_keys(other_dir)

    # Deleting the first removes both of its artifacts; the other namespace's copy stays.
    kube.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", "digits"
    )
    kube.wait("the ModelDeployment to be gone", lambda: kube.get("digits") is None)
    assert not {key, second_key} & store_keys(store_dir)
    assert key in store_keys(other_dir)
    kube.wait("its InferenceService to be collected", lambda: kube.isvc("digits") is None)
    assert other.isvc("digits") is not None

    # Deleting the other removes its copy too.
    other.custom.delete_namespaced_custom_object(
        "modeldeploy.io", "v1alpha1", second_namespace, "modeldeployments", "digits"
    )
    other.wait("the second ModelDeployment to be gone", lambda: other.get("digits") is None)
    assert key not in store_keys(other_dir)


def test_operator_killed_mid_staging_converges_without_a_second_job(
    kube: Kube,
    start_operator,  # type: ignore[no-untyped-def]
) -> None:
    first = start_operator()
    kube.create(
        "digits",
        digits_spec(optimization={"precision": "fp16", "parity": {"atol": 0.01, "rtol": 0.01}}),
    )
    job = kube.wait("the staging Job", lambda: kube.jobs("digits"))[0]
    assert not (job.get("status") or {}).get("conditions")  # still staging
    first.kill()
    assert first.process.returncode == -9

    second = start_operator()
    kube.wait_condition("digits", "Ready", "True", timeout=180)
    assert kube.get("digits")["status"]["artifact"]["precision"] == "fp16"  # type: ignore[index]
    # Exactly one Job ever ran for this spec: one pod, of the Job seen before the kill.
    pods = kube.pods(job["metadata"]["name"])
    assert len(pods) == 1
    assert pods[0].metadata.labels["batch.kubernetes.io/controller-uid"] == job["metadata"]["uid"]
    assert "created staging Job" not in second.log_text()

    # Idempotent: a restart on a converged object changes nothing.
    version = kube.get("digits")["metadata"]["resourceVersion"]  # type: ignore[index]
    isvc_version = kube.isvc("digits")["metadata"]["resourceVersion"]  # type: ignore[index]
    second.stop()
    third = start_operator()
    kube.wait(
        "the third operator to resume", lambda: "Handler 'reconcile' succeeded" in third.log_text()
    )
    time.sleep(2)
    assert kube.get("digits")["metadata"]["resourceVersion"] == version  # type: ignore[index]
    assert kube.isvc("digits")["metadata"]["resourceVersion"] == isvc_version  # type: ignore[index]


def test_scoped_operator_leaves_other_namespaces_alone_and_reports_liveness(
    kube: Kube,
    start_operator,  # type: ignore[no-untyped-def]
    api_client: client.ApiClient,
    second_namespace: str,
) -> None:
    port = free_port()
    start_operator("--liveness-port", str(port))
    outside = Kube(api_client, second_namespace)
    outside.create("digits", digits_spec())
    kube.create("digits", digits_spec())
    kube.wait_condition("digits", "Ready", "True")
    # The operator watches only its own namespace: the other object is untouched.
    untouched = outside.get("digits")
    assert untouched is not None
    assert "status" not in untouched
    assert not untouched["metadata"].get("finalizers")
    assert outside.jobs("digits") == []
    assert outside.isvc("digits") is None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200


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
