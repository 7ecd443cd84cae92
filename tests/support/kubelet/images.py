"""The image table: which local program plays each image the node agent can run.

No base image can be pulled here, so a container runs as a local process of the program its
image would run, with the image's ENTRYPOINT and CMD as its Dockerfile declares them. The
kubelet's rule for ``command`` and ``args`` applies on top: ``command`` replaces the entrypoint,
``args`` replace the CMD. The entrypoints are found in ``PATH``, which puts this checkout's
virtual environment first, as the images put ``/opt/modeldeploy/bin`` first.

An image not in the table cannot run: its container waits with reason ``ErrImagePull`` and a
message naming the image, as on a node that cannot pull it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Image:
    """What an image runs: its Dockerfile's ENTRYPOINT, CMD, USER and ENV, and the accounts
    its ``useradd`` lines add to its ``/etc/passwd``."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    accounts: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    """(path in the image, path under the node's image sources): files of the image that this
    checkout does not have, read from the pinned module instead (``NodeAgent.image_sources``)."""


_PYTHON_IMAGE_ENV = (("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"), ("HOME", "/tmp"))
STORAGE_INITIALIZER = "/storage-initializer/scripts/initializer-entrypoint"
_MODELDEPLOY_ACCOUNT = ("modeldeploy:x:65532:65532::/tmp:/usr/sbin/nologin",)

TABLE: dict[str, Image] = {
    # runtimes/onnx/Dockerfile.cpu and .cuda (the runtime's base image has uid 1000)
    "ghcr.io/modeldeploy/onnx-runtime": Image(
        ("modeldeploy",), ("serve", "/mnt/models"), 1000,
        accounts=("modeldeploy:x:1000:1000::/tmp:/usr/sbin/nologin",),
    ),
    # images/staging.Dockerfile and images/operator.Dockerfile
    "ghcr.io/modeldeploy/staging": Image(
        ("modeldeploy",), ("stage",), 65532, _PYTHON_IMAGE_ENV, _MODELDEPLOY_ACCOUNT
    ),
    "ghcr.io/modeldeploy/operator": Image(
        ("modeldeploy",), ("operator",), 65532, _PYTHON_IMAGE_ENV, _MODELDEPLOY_ACCOUNT
    ),
    # KServe's storage-initializer image (python/storage-initializer.Dockerfile at the pinned
    # version): its entrypoint script, run with kserve-storage, as uid 1000.
    "kserve/storage-initializer": Image(
        ("python", STORAGE_INITIALIZER), (), 1000, _PYTHON_IMAGE_ENV,
        ("kserve:x:1000:1000::/tmp:/usr/sbin/nologin",),
        ((STORAGE_INITIALIZER, "kserve/initializer-entrypoint"),),
    ),
}  # fmt: skip
"""Keyed by repository: any tag or digest of it runs the same program (this checkout's)."""


class ImageNotFoundError(LookupError):
    """The image is not in the table: its container cannot start."""


def repository(image: str) -> str:
    """``ghcr.io/modeldeploy/onnx-runtime:0.1.0-cuda12`` → ``ghcr.io/modeldeploy/onnx-runtime``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def lookup(image: str) -> Image:
    try:
        return TABLE[repository(image)]
    except KeyError:
        raise ImageNotFoundError(
            f'image "{image}" is not in the node agent\'s image table '
            f"(tests/support/kubelet/images.py); it runs {sorted(TABLE)}"
        ) from None


def argv(image: Image, command: list[str] | None, args: list[str] | None) -> list[str]:
    """The process's arguments by the kubelet's rule (``command`` replaces ENTRYPOINT; ``args``
    replace CMD; ``command`` alone drops CMD)."""
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args or image.cmd)]


def path() -> str:
    return os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"])
