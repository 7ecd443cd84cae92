"""The executor's containers: a pod's container run from its image with podman and runc, as a
kubelet would run it, for every image `make images` built (``podman image exists``).

What is honoured from the pod: the image, command and args; the declared environment and
``envFrom`` Secrets; every volume mount at its path, read-only where it says so (claims are
folders under the executor's PVC root, emptyDir volumes one folder per pod); the termination
message file; ``runAsUser``/``runAsGroup``, ``readOnlyRootFilesystem``, dropped capabilities
and ``allowPrivilegeEscalation: false``. ``fsGroup`` is emulated by making the writable folders
writable by anyone. What is not: resources, and the pod network (containers share the host's;
NetworkPolicies need a CNI, and there is none here).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.controlplane import REPO_ROOT
from tests.support.image_source import built_from_here

CONF = REPO_ROOT / "hack" / "images" / "containers.conf"
LABEL = "modeldeploy.io/executor"
"""On every container an executor starts: its process id, so that containers left by an
executor that died (SIGKILL reaches podman's client, not the container) are removed."""


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Mount:
    host: Path
    path: str
    read_only: bool


class Podman:
    """podman with this repository's settings (runc, the host's ulimits)."""

    def __init__(self) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
        self._images: dict[str, bool] = {}

    @staticmethod
    def available() -> bool:
        return shutil.which("podman") is not None and CONF.exists()

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout,
            check=False,
        )  # fmt: skip

    def has(self, image: str) -> bool:
        """Whether this checkout's `make images` built ``image`` from its source as it is now,
        and podman still has it (asked once per image): an image of older code would test
        that code, not this."""
        if image not in self._images:
            self._images[image] = (
                built_from_here(image) and self.run("image", "exists", image).returncode == 0
            )
        return self._images[image]

    def remove(self, name: str) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run("rm", "-f", "-t", "2", name)

    def remove_mine(self) -> None:
        """Remove every container this process started."""
        listed = self.run("ps", "-a", "-q", "--filter", f"label={LABEL}={os.getpid()}")
        if ids := listed.stdout.split():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("rm", "-f", "-t", "0", *ids)

    def remove_orphans(self) -> None:
        """Remove the containers of executors that are gone."""
        listed = self.run("ps", "-a", "--filter", f"label={LABEL}",
                          "--format", f'{{{{.Names}}}} {{{{index .Labels "{LABEL}"}}}}')  # fmt: skip
        for line in listed.stdout.splitlines():
            name, _, pid = line.partition(" ")
            if name and not _alive(pid):
                self.remove(name)

    def command(
        self,
        name: str,
        pod: dict[str, Any],
        container: dict[str, Any],
        env: dict[str, str],
        mounts: list[Mount],
        publish: dict[int, int] | None = None,
    ) -> list[str]:
        """The ``podman run`` (in the foreground, removed when it exits) for one container: on
        the host's network, or, with ``publish`` (host port → container port), on its own with
        those ports published on 127.0.0.1."""
        pod_security = pod.get("securityContext") or {}
        security = container.get("securityContext") or {}
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        group = security.get("runAsGroup", pod_security.get("runAsGroup", user))
        line = ["podman", "run", "--rm", "--name", name, "--label", f"{LABEL}={os.getpid()}",
                "--pull", "never"]  # fmt: skip
        if publish:
            line += [f"--publish=127.0.0.1:{h}:{c}" for h, c in publish.items()]
        else:
            line += ["--network", "host"]
        if user is not None:
            line += ["--user", f"{user}:{group}"]
        if security.get("readOnlyRootFilesystem"):
            line.append("--read-only")
        if "ALL" in ((security.get("capabilities") or {}).get("drop") or []):
            line += ["--cap-drop", "ALL"]
        if security.get("allowPrivilegeEscalation") is False:
            line += ["--security-opt", "no-new-privileges"]
        for mount in mounts:
            line += ["-v", f"{mount.host}:{mount.path}:{'ro' if mount.read_only else 'rw'}"]
        for key, value in env.items():
            line += ["-e", f"{key}={value}"]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if container.get("command"):
            line += ["--entrypoint", command[0], container["image"], *command[1:]]
        else:  # args alone go to the image's own entrypoint
            line += [container["image"], *command]
        return line


def writable_by_all(folder: Path) -> None:
    """What ``fsGroup`` does for a pod's volumes, roughly: the container's user may write."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o777)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():
                os.chmod(path, 0o777 if path.is_dir() else 0o666)
