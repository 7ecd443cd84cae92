"""List, then watch, one kind of object in one scope: the operator's own event source, as
client-go's reflector is a Go operator's.

Why not kopf's: kopf wrapped every watch event in its own machinery (a per-object queue and
worker, a ``Body`` with views, an object logger, cause detection, handler progress) before
our filter dropped most of them. Under ``py-spy --gil`` in the 1 000 ModelDeployment benchmark
that was about a quarter of the operator's CPU, more than any one of our reads
(docs/benchmarks.md). Here an event is one decoded line, handed to a plain function
(``handlers.py``) that keeps memory current and says whether a ModelDeployment needs a look.

The contract is client-go's: every object is delivered once as ``ADDED`` by the listing, then
every change as the watch delivers it. When the watch cannot go on from where it was (the API
server has compacted that resourceVersion away: 410 Gone; or the connection broke), the
resource is listed again: every object is delivered again as ``ADDED``, and one the new listing
lacks, deleted while nobody watched, as ``DELETED``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from modeldeploy.controller.bodies import Key, key_of
from modeldeploy.controller.kube import Kube
from modeldeploy.controller.watch_decoding import loads

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any]], None]
"""Called with the event's type (``ADDED``, ``MODIFIED``, ``DELETED``) and the object."""

BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits before listing again after failures in a row (the API server restarting, RBAC not
yet granted, a CRD not yet installed); the last repeats."""


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class ExpiredError(Exception):
    """The watch's resourceVersion is too old to go on from (410 Gone): list again."""


class NotServedError(Exception):
    """An optional resource the API server does not serve (404 on its listing)."""


NOT_SERVED_SECONDS = 30.0
"""How often an optional resource not served is looked for again."""


class Informer:
    """One resource in one namespace (or the whole cluster), listed, then watched, forever."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        deliver: Deliver,
        *,
        namespace: str | None = None,
        selector: str | None = None,
        watch_seconds: int = 300,
        optional: bool = False,
    ) -> None:
        """``optional``: a resource the API server may not serve (its CRD not installed) counts
        as listed, with nothing in it, and is looked for again every ``NOT_SERVED_SECONDS``."""
        self.kube, self.resource, self.deliver = kube, resource, deliver
        self.namespace, self.selector = namespace, selector
        self.watch_seconds = watch_seconds
        self.optional = optional
        self.synced = asyncio.Event()
        """Set once the first listing has been delivered."""
        self._keys: set[Key] = set()
        """What has been delivered and not deleted: a relisting's missing ones are deleted."""

    def __str__(self) -> str:
        scope = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        return f"{self.resource} in {scope}"

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        while True:
            try:
                version = await self._list()
                failures = 0
                while True:
                    version = await self._watch(version)
            except NotServedError:
                if failures == 0:
                    log.info(f"{self}: not served; looking again every {NOT_SERVED_SECONDS:.0f}s")
                failures = 1
                await asyncio.sleep(NOT_SERVED_SECONDS)
            except ExpiredError:
                log.info(f"{self}: the watch expired; listing again")
            except Exception as err:
                # Refused, transient (the listing's TransientApiError), the connection lost
                # (aiohttp's errors), a line that does not decode: the stream is abandoned and
                # the resource listed again. Only cancellation ends the loop.
                wait = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning(f"{self}: {_reason(err)}; listing again in {wait:.0f}s")
                await asyncio.sleep(wait)

    async def _list(self) -> str:
        """Deliver every object; the listing's resourceVersion, where the watch goes on."""
        r = self.resource
        seen: set[Key] = set()
        version = ""
        pages = self.kube.pages(r.group, r.version, r.plural, self.namespace, self.selector)
        try:
            async for page in pages:
                version = str((page.get("metadata") or {}).get("resourceVersion") or "")
                for obj in page.get("items") or []:
                    seen.add(key_of(obj))
                    self._deliver("ADDED", obj)
        except ApiException as err:
            if not (self.optional and err.status == 404):
                raise
            self._forget(seen)
            raise NotServedError() from err
        self._forget(seen)
        return version

    def _forget(self, listed: set[Key]) -> None:
        """What was delivered before and a listing lacks is delivered as deleted; the
        informer then counts as listed."""
        for namespace, name in sorted(self._keys - listed):
            self._deliver("DELETED", {"metadata": {"namespace": namespace, "name": name}})
        self._keys = listed
        self.synced.set()

    async def _watch(self, version: str) -> str:
        """Deliver the changes after ``version`` until the API server ends the watch; the last
        resourceVersion seen, where the next watch goes on."""
        r = self.resource
        lines = self.kube.watch(r.group, r.version, r.plural, self.namespace, version,
                                self.selector, self.watch_seconds)  # fmt: skip
        try:
            async for line in lines:
                event = loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise ExpiredError()
                    raise ApiException(status=obj.get("code") or 0, reason=obj.get("message"))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self._keys.discard(key_of(obj))
                elif kind in ("ADDED", "MODIFIED"):
                    self._keys.add(key_of(obj))
                else:
                    continue
                self._deliver(kind, obj)
        except ApiException as err:
            if err.status == 410:
                raise ExpiredError() from err
            raise
        return version

    def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        try:
            self.deliver(kind, obj)
        except Exception:  # one bad event must not end the watch of all the others
            log.exception(f"{self}: handling {kind} {key_of(obj)}")


def _reason(err: Exception) -> str:
    if isinstance(err, ApiException):
        return f"{err.status} {err.reason}"
    return f"{type(err).__name__}: {err}"
