"""The operator checks that the artifact store's Secret exists without ever receiving its data
(issue 16): it asks the real API server for the Secret's metadata alone."""

from __future__ import annotations

import asyncio

from kubernetes import client

from modeldeploy.controller.kube import Kube


def test_the_store_secret_is_checked_by_its_metadata_alone(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "store-creds"}, "stringData": {"AWS_SECRET_ACCESS_KEY": "hunter2"}},
    )
    kube = Kube(api_client)

    async def check() -> tuple[object, bool, bool]:
        try:
            found = await kube.secret_metadata(namespace, "store-creds")
            return (
                found,
                await kube.secret_exists(namespace, "store-creds"),
                await kube.secret_exists(namespace, "absent"),
            )
        finally:
            await kube.aclose()

    found, exists, absent = asyncio.run(check())
    assert isinstance(found, dict)
    assert found["kind"] == "PartialObjectMetadata"
    assert found["metadata"]["name"] == "store-creds"
    assert "data" not in found
    assert "hunter2" not in str(found)
    assert exists is True
    assert absent is False
