"""The operator's watches (``controller/informer.py``) against the real API server: a listing
first, then every change in order, across the API server ending a watch; and what was deleted
while nobody watched is delivered as deleted by the next listing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from kubernetes import client

from modeldeploy.controller.informer import Informer, Resource
from modeldeploy.controller.kube import Kube
from tests.support.beside import run_beside

pytestmark = [pytest.mark.cluster]

CONFIG_MAPS = Resource("", "v1", "configmaps")
LABEL = {"informer-test": "yes"}


def _config_map(name: str, value: str, labels: dict[str, str] = LABEL) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": value}}


class Seen:
    """What an informer delivered: (type, name, data value)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"], (obj.get("data") or {}).get("v")))

    async def until(self, count: int) -> None:
        while len(self.events) < count:
            await asyncio.sleep(0.02)


def _with(informer: Informer, scenario: Callable[[], Awaitable[None]]) -> None:
    run_beside(informer.run, scenario, 30, finally_=informer.kube.aclose)


def test_an_informer_lists_then_delivers_every_change_in_order_across_ended_watches(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, _config_map("before", "1"))
    core.create_namespaced_config_map(namespace, _config_map("unlabelled", "1", {"x": "y"}))
    seen = Seen()
    # The API server ends each watch after a second: the changes after it must still arrive,
    # each once, from where the last watch stopped.
    informer = Informer(Kube(api_client), CONFIG_MAPS, seen, namespace=namespace,
                        selector="informer-test=yes", watch_seconds=1)  # fmt: skip

    async def scenario() -> None:
        await informer.synced.wait()
        assert seen.events == [("ADDED", "before", "1")]
        await asyncio.to_thread(core.create_namespaced_config_map, namespace,
                                _config_map("after", "2"))  # fmt: skip
        await seen.until(2)
        await asyncio.sleep(2.5)  # at least two watches ended by the server
        await asyncio.to_thread(core.patch_namespaced_config_map, "before", namespace,
                                {"data": {"v": "3"}})  # fmt: skip
        await asyncio.to_thread(core.delete_namespaced_config_map, "after", namespace)
        await seen.until(4)
        await asyncio.sleep(0.3)  # time for a duplicate to show

    _with(informer, scenario)
    assert [(k, n) for k, n, _ in seen.events] == [
        ("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")
    ]  # fmt: skip
    assert seen.events[2][2] == "3"


def test_what_was_deleted_while_nobody_watched_is_delivered_as_deleted_by_the_next_listing(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    for name in ("stays", "goes"):
        core.create_namespaced_config_map(namespace, _config_map(name, "1"))
    seen = Seen()
    informer = Informer(Kube(api_client), CONFIG_MAPS, seen, namespace=namespace,
                        selector="informer-test=yes")  # fmt: skip

    async def listed() -> None:
        await informer.synced.wait()

    _with(informer, listed)
    assert sorted(seen.events) == [("ADDED", "goes", "1"), ("ADDED", "stays", "1")]
    core.delete_namespaced_config_map("goes", namespace)
    seen.events.clear()

    async def listed_again() -> None:
        await seen.until(2)

    _with(informer, listed_again)  # the same informer, watching again from a new listing
    assert sorted(seen.events) == [("ADDED", "stays", "1"), ("DELETED", "goes", None)]


def test_an_optional_resource_the_api_server_does_not_serve_counts_as_listed_and_empty(
    api_client: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Resource("widgets.example.invalid", "v1", "widgets")
    seen = Seen()
    optional = Informer(Kube(api_client), missing, seen, namespace=namespace, optional=True)

    async def listed() -> None:
        await optional.synced.wait()

    with caplog.at_level(logging.INFO):
        _with(optional, listed)
    assert seen.events == []
    assert "not served" in caplog.text
    required = Informer(Kube(api_client), missing, seen, namespace=namespace)

    async def never_listed() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(required.synced.wait(), 1.5)

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _with(required, never_listed)
    assert "404" in caplog.text  # said, and tried again
