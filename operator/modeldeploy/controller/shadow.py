"""The shadow ConfigMap: what stable mirrors to a candidate (``api/mirror.py`` is its contract).

Pure builders. The ConfigMap is written only when a shadow starts or stops, never to keep it
alive: a deployment that never shadows has none, and its pods' optional volume stays empty.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api import mirror
from modeldeploy.api.base import duration_seconds
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.rollout import Shadow
from modeldeploy.controller import naming

SHADOW = "shadow"
"""The ConfigMap's role label."""


def get_mirror_config(
    deployment: ModelDeployment, spec: Shadow, stable: str, candidate: str, url: str
) -> mirror.MirrorConfig:
    """Stable revision ``stable`` mirrors to ``candidate`` at ``url``, comparing within the
    shadow's tolerances, by default the candidate artifact's own parity tolerances."""
    parity = deployment.spec.optimization.parity
    return mirror.MirrorConfig(
        source=stable,
        candidate=candidate,
        url=url,
        percent=spec.percent,
        atol=parity.atol if spec.atol is None else spec.atol,
        rtol=parity.rtol if spec.rtol is None else spec.rtol,
        max_in_flight=spec.max_in_flight,
        timeout_seconds=duration_seconds(spec.timeout),
        max_evidence=spec.max_evidence,
    )


def get_shadow_config_map(
    name: str, namespace: str, uid: str, config: mirror.MirrorConfig | None
) -> dict[str, Any]:
    """The ConfigMap every predictor pod of ModelDeployment ``name`` mounts; ``None`` for no
    shadow (``{}``: the runtime stops mirroring)."""
    data = config.model_dump_json(by_alias=True) if config is not None else "{}"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": mirror.config_map_name(name),
            "namespace": namespace,
            "labels": naming.labels(name, SHADOW),
            "ownerReferences": [naming.owner_reference(name, uid)],
        },
        "data": {mirror.FILE: data},
    }


def shadow_volume(name: str) -> dict[str, Any]:
    """The predictor pods' volume: the ConfigMap, optional so a pod starts before it exists."""
    return {
        "name": mirror.VOLUME,
        "configMap": {"name": mirror.config_map_name(name), "optional": True},
    }


SHADOW_MOUNT = {"name": mirror.VOLUME, "mountPath": mirror.MOUNT_PATH, "readOnly": True}
"""Where the runtime's container sees it (the runtime's default --shadow-config)."""
