"""The ModelDeployments as the operator last saw them: from its watch and from the answers to its
own writes, so that a reconciliation starts from memory instead of a GET.

A GET of the ModelDeployment at the start of every reconciliation was the operator's most expensive read
(its managedFields alone are most of the body), made on every event although the watch had
just delivered the same object. Reading from memory is safe because every write the
reconciliation makes to the ModelDeployment carries the resourceVersion it read as a
precondition: when memory is behind the API server, that write is refused with 409 and the
reconciliation runs again from a fresh GET (``engine.converge``). A watch that breaks lists
again, and what it missed is delivered then (``informer.py``).

The InferenceServices the operator owns are held the same way (``State.isvcs``): from the
watch of them, which already decodes every event to decide whether to reconcile, and from the
answers to the operator's applies. Those reads need no precondition: the operator never writes
what it read from an InferenceService back to it (its applies are server-side, of its own
fields), it only reports and decides from the status, and a newer status arrives as a watch event
that triggers a reconciliation of its own. A miss (an InferenceService the watch has not
delivered, or one without our labels, which is never held) is a GET. Of an
InferenceService's managedFields, the operator's own entry is kept: ``reconcile.applied`` reads
from it which fields the last apply set, so that dropping one (``canaryTrafficPercent`` at a
promotion) is still sent.

Bodies are kept as compact JSON without managedFields: a thousand of them cost a few megabytes,
and each reconciliation gets its own copy to change.
"""

from __future__ import annotations

from typing import Any

import orjson

Key = tuple[str, str]
"""(namespace, name): how every object held, watched or queued is known."""


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


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
    """Bodies of one kind of object by (namespace, name)."""

    def __init__(self, keep_manager: str | None = None) -> None:
        """``keep_manager``: the field manager whose managedFields entries are kept (the
        operator's own, for an object it applies: ``reconcile.applied`` reads which fields its
        last apply set, to see that a field it now drops must be applied away)."""
        self._held: dict[Key, tuple[str, bytes]] = {}
        self._keep = keep_manager

    def put(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        version = resource_version(body)
        held = self._held.get(key_of(body))
        if held is not None and not newer(version, held[0]):
            return
        compact = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        if self._keep is not None:
            ours = [m for m in meta.get("managedFields") or [] if m.get("manager") == self._keep]
            if ours:
                compact["metadata"]["managedFields"] = ours
        self._held[key_of(body)] = (version, orjson.dumps(compact))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the body last seen, or None when none is held."""
        held = self._held.get((namespace, name))
        if held is None:
            return None
        body: dict[str, Any] = orjson.loads(held[1])
        return body

    def forget(self, namespace: str, name: str) -> None:
        self._held.pop((namespace, name), None)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def held(self) -> list[Key]:
        """The key of every body held, as they are now."""
        return list(self._held)

    def __len__(self) -> int:
        return len(self._held)


class Owned:
    """Objects by the ModelDeployment they belong to, then by name: each deployment's staging
    Jobs, as the Job watch and the operator's own creates last delivered them, so that a
    reconciliation reads them here instead of listing them (twice per deployment on the way to
    Ready). Kept without managedFields; a few per deployment, each until its TTL."""

    def __init__(self) -> None:
        self._held: dict[Key, dict[str, dict[str, Any]]] = {}

    def put(self, owner: Key, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        named = self._held.setdefault(owner, {})
        held = named.get(meta.get("name", ""))
        if held is not None and not newer(resource_version(obj), resource_version(held)):
            return
        compact = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        named[meta.get("name", "")] = compact

    def forget(self, owner: Key, name: str) -> None:
        named = self._held.get(owner)
        if named is not None:
            named.pop(name, None)
            if not named:
                del self._held[owner]

    def of(self, owner: Key) -> list[dict[str, Any]]:
        """The objects held for ``owner`` (the reconciliation may read, not change, them)."""
        return list(self._held.get(owner, {}).values())
