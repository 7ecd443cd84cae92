"""Where a ``file://`` or ``pvc://`` URI is on this machine: the staging Job and the operator
mount each claim under one root."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

PVC_ROOT_ENV = "MODELDEPLOY_PVC_ROOT"
"""Where the claims that pvc:// URIs name are mounted (default /mnt/pvc)."""


def pvc_root() -> Path:
    return Path(os.environ.get(PVC_ROOT_ENV, "/mnt/pvc"))


def local_path(uri: str) -> Path | None:
    """Where a ``file://`` or ``pvc://`` URI is on this machine; None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "pvc":
        return pvc_root() / parsed.netloc / parsed.path.lstrip("/")
    return None
