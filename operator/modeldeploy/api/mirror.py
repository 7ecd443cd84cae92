"""The shadow contract between the operator and the runtime: one ConfigMap per ModelDeployment.

Every predictor pod mounts ``<deployment>-shadow`` (``optional``, so a pod starts before it
exists) from its first deploy on, so starting or stopping a shadow never restarts stable: the
operator rewrites the ConfigMap, the kubelet refreshes the mounted file, and the runtime reads it
again when it changes. The file names the revision that mirrors (stable) and the one that is
compared (the candidate); every other pod that mounts it, the candidate's own among them, does
nothing. The runtime parses the file with :class:`MirrorConfig` and a byte cap, so whatever is
in the ConfigMap is checked before it steers a request.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MOUNT_PATH = "/var/run/modeldeploy/shadow"
"""Where the predictor container sees the ConfigMap."""
FILE = "shadow.json"
"""The ConfigMap's one key, and so the file's name under MOUNT_PATH."""
CONFIG_ENV = "MODELDEPLOY_SHADOW_CONFIG"
"""The runtime's setting for the file's path (``modeldeploy serve --shadow-config``)."""
REVISION_ENV = "MODELDEPLOY_REVISION"
"""The revision (staging hash) a predictor pod serves, set by the operator on its container."""
VOLUME = "modeldeploy-shadow"
MAX_BYTES = 16 * 1024
"""Largest file the runtime reads; a larger one switches the shadow off."""


def config_map_name(deployment: str) -> str:
    return f"{deployment}-shadow"


class MirrorConfig(BaseModel):
    """What the stable revision mirrors, and how its answers are compared. An empty file (or
    ``{}``) means no shadow."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    source: Annotated[str, Field(min_length=1, max_length=253)]
    """The revision that mirrors its requests: stable."""

    candidate: Annotated[str, Field(min_length=1, max_length=253)]
    """The revision compared: the metrics' ``candidate`` label."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=2048)]
    """The candidate's base URL; requests go to ``<url>/v2/models/<model>/infer``."""

    percent: Annotated[float, Field(gt=0, le=100)]
    """Share of requests mirrored."""

    atol: Annotated[float, Field(ge=0)]
    rtol: Annotated[float, Field(ge=0)]
    """Agreement: every element within atol + rtol·|stable's|."""

    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 8
    """Mirrored requests in flight at once; one sampled beyond that is dropped."""

    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    """A mirrored request not answered within this is an error."""

    max_evidence: Annotated[int, Field(ge=0, le=20)] = 5
    """Disagreements kept in memory for the operator to collect (``.npz``)."""
