"""The operator's own requests (``controller/api_transport.py`` under ``controller/kube.py``)
against the real API server: each answer and each failure as the engine reads it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from modeldeploy.controller.kube import Kube, TransientApiError, _path
from modeldeploy.controller.naming import FIELD_MANAGER

T = TypeVar("T")


def run(kube: Kube, call: Callable[[], Awaitable[T]]) -> T:
    async def once() -> T:
        try:
            return await call()
        finally:
            await kube.aclose()

    return asyncio.run(once())


def test_paths_name_the_core_group_apart_from_the_others() -> None:
    assert _path("", "v1", "team", "pods") == "/api/v1/namespaces/team/pods"
    assert (
        _path("modeldeploy.io", "v1alpha1", "team", "modeldeployments", "m", "status")
        == "/apis/modeldeploy.io/v1alpha1/namespaces/team/modeldeployments/m/status"
    )
    assert _path("batch", "v1", None, "jobs") == "/apis/batch/v1/jobs"


def _job(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "once", "namespace": namespace},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox"}]}}}}  # fmt: skip


def test_reads_writes_and_refusals_come_back_as_the_engine_reads_them(
    api_client: client.ApiClient, namespace: str
) -> None:
    kube = Kube(api_client)
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": namespace},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "onnx"},
                                             "storageUri": "pvc://a/b"}}}}  # fmt: skip
    bad = _job(namespace)
    bad["metadata"]["name"] = "bad"
    bad["spec"]["template"]["spec"]["containers"] = []

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["absent"] = await kube.inference_service(namespace, "m")
        seen["created"] = await kube.create_job(_job(namespace))
        seen["again"] = await kube.create_job(_job(namespace))
        seen["jobs"] = await kube.job(namespace, "once")
        seen["applied"] = await kube.apply(isvc, "inferenceservices")
        seen["read"] = await kube.inference_service(namespace, "m")
        config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "cm", "namespace": namespace}, "data": {"k": "v"}}  # fmt: skip
        seen["core"] = await kube.apply(config_map, "configmaps")  # the core group's path
        try:
            await kube.create_job(bad)
        except ApiException as err:
            seen["refused"] = err
        await kube.delete_job(namespace, "once")
        await kube.delete_job(namespace, "once")  # already gone: not an error
        seen["deleted"] = await kube.job(namespace, "once")
        return seen

    seen = run(kube, scenario)
    assert seen["absent"] is None
    assert seen["created"]["metadata"]["uid"]  # the Job as the API server made it
    assert seen["again"] is None  # 409: the existing Job is left as it is
    assert seen["jobs"]["metadata"]["name"] == "once"
    assert seen["applied"]["metadata"]["managedFields"][0]["manager"] == FIELD_MANAGER
    assert seen["read"]["spec"]["predictor"]["model"]["storageUri"] == "pvc://a/b"
    assert seen["core"]["data"] == {"k": "v"}
    assert seen["core"]["metadata"]["managedFields"][0]["manager"] == FIELD_MANAGER
    refused = seen["refused"]
    assert refused.status == 422
    # The API server's words, with the field, reach the condition.
    assert "spec.template.spec.containers: Required value" in refused.body
    assert seen["deleted"] is None or seen["deleted"]["metadata"].get("deletionTimestamp")


def test_an_api_server_that_does_not_answer_is_a_transient_error(
    api_client: client.ApiClient,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    kube = Kube(client.ApiClient(configuration))
    with pytest.raises(TransientApiError, match="GET /apis/batch/v1/namespaces/x/jobs/y"):
        run(kube, lambda: kube.job("x", "y"))


def test_the_bearer_token_is_asked_for_on_every_request(
    api_client: client.ApiClient, namespace: str
) -> None:
    """The kubernetes client's refresh hook (a projected token re-read, an exec plugin run) is
    honoured on each call, not captured once: a wrong token is refused as unauthenticated
    (401), and the service account's token, swapped in by the hook, authenticates (a 403 from
    RBAC: that account may read nothing)."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    granted = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    )
    configuration = client.Configuration()
    configuration.host = api_client.configuration.host
    configuration.ssl_ca_cert = api_client.configuration.ssl_ca_cert
    tokens = ["not-a-token"]
    configuration.api_key_prefix["authorization"] = "Bearer"

    def refresh(conf: client.Configuration) -> None:
        conf.api_key["authorization"] = tokens[0]

    configuration.refresh_api_key_hook = refresh
    configuration.api_key["authorization"] = "unused"
    kube = Kube(client.ApiClient(configuration))

    def status() -> int:
        with pytest.raises(ApiException) as refused:
            run(kube, lambda: kube.job(namespace, "none"))
        return int(refused.value.status)

    assert status() == 401
    tokens[0] = granted.status.token
    assert status() == 403


def test_a_kubeconfig_tls_server_name_is_the_name_the_certificate_is_checked_against(
    api_client: client.ApiClient, namespace: str
) -> None:
    """``tls-server-name`` (an API server reached by an address its certificate does not name,
    through a tunnel, say): verified against that name, so a name the certificate holds works
    and one it lacks is refused, before any request is sent."""

    def kube_named(server_name: str) -> Kube:
        configuration = client.Configuration()
        source = api_client.configuration
        configuration.host = source.host
        configuration.ssl_ca_cert = source.ssl_ca_cert
        configuration.cert_file, configuration.key_file = source.cert_file, source.key_file
        configuration.tls_server_name = server_name
        return Kube(client.ApiClient(configuration))

    named = kube_named("kubernetes.default.svc")
    assert run(named, lambda: named.job(namespace, "none")) is None  # a 404: it was answered
    unnamed = kube_named("not-in-the-certificate.example")
    with pytest.raises(TransientApiError, match="certificate"):
        run(unnamed, lambda: unnamed.job(namespace, "none"))
