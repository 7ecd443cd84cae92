"""The ModelDeployments as the operator last saw them: from its watch and from the answers to its
own writes, so that a reconciliation starts from memory instead of a GET.

A GET of the ModelDeployment under the reconcile's lock was the operator's most expensive read
(its managedFields alone are most of the body), made on every event although kopf's watch had
just delivered the same object. Reading from memory is safe because every write the
reconciliation makes to the ModelDeployment carries the resourceVersion it read as a
precondition: when memory is behind the API server, that write is refused with 409 and the
reconciliation runs again from a fresh GET (``engine.converge``). The resync reads
fresh too, for a watch that silently missed an event.

Bodies are kept as compact JSON without managedFields: a thousand of them cost a few megabytes,
and each reconciliation gets its own copy to change.
"""

from __future__ import annotations

from typing import Any

import orjson

Key = tuple[str, str]


def resource_version(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def newer(candidate: str, held: str) -> bool:
    """Whether ``candidate`` may replace ``held``. The API server's resourceVersions are opaque
    strings; etcd's are increasing integers, and only those are compared (an older event
    arriving after our own write's answer must not replace it). Anything else replaces."""
    if candidate.isdigit() and held.isdigit():
        return int(candidate) >= int(held)
    return True


class Bodies:
    """ModelDeployment bodies by (namespace, name)."""

    def __init__(self) -> None:
        self._held: dict[Key, tuple[str, bytes]] = {}

    def put(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        version = resource_version(body)
        held = self._held.get(key)
        if held is not None and not newer(version, held[0]):
            return
        compact = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        self._held[key] = (version, orjson.dumps(compact))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the body last seen, or None when none is held."""
        held = self._held.get((namespace, name))
        if held is None:
            return None
        body: dict[str, Any] = orjson.loads(held[1])
        return body

    def forget(self, namespace: str, name: str) -> None:
        self._held.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._held)
