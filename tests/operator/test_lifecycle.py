"""Crash recovery and scope: an operator SIGKILLed in the middle of staging converges after a
restart without a second Job, and a scoped operator leaves other namespaces alone. (Deletion
across namespaces and the Lease are attacks of their own: tests/security/.)"""

from __future__ import annotations

import time
import urllib.request

from kubernetes import client

from tests.operator.conftest import Kube, digits_spec
from tests.support.controlplane import free_port


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
    third = start_operator("--verbose")
    kube.wait(
        "the third operator to resume",
        lambda: f"converged {kube.namespace}/digits" in third.log_text(),
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
