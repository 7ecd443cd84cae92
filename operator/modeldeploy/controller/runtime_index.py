"""The ServingRuntimes and ClusterServingRuntimes as their watches last delivered them, reduced to
what ``runtimes.resolve_runtime`` reads: the reconciliation resolves a ModelDeployment's runtime
from here, never with a GET."""

from __future__ import annotations

from typing import Any

RuntimeKey = tuple[str | None, str]
"""(namespace, name); namespace None for a ClusterServingRuntime."""


def runtime_view(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a (Cluster)ServingRuntime that ``runtimes.resolve_runtime`` reads."""
    spec = body.get("spec") or {}
    return {
        "metadata": {"annotations": dict(body.get("metadata", {}).get("annotations") or {})},
        "spec": {k: spec.get(k) for k in ("supportedModelFormats", "protocolVersions", "disabled")},
    }


class RuntimeIndex:
    """Every runtime watched, by ``RuntimeKey``. A change to one queues nothing: a ModelDeployment
    it blocked is looked at again by the next resync."""

    def __init__(self) -> None:
        self._views: dict[RuntimeKey, dict[str, Any]] = {}

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._views.get((namespace, name))

    def on_event(self, kind: str, obj: dict[str, Any], *, cluster: bool) -> None:
        meta = obj["metadata"]
        key = (None if cluster else meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._views.pop(key, None)
        else:
            self._views[key] = runtime_view(obj)
