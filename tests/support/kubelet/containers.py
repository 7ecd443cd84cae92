"""One container's process, its restarts and its state as the kubelet reports it.

The process starts through ``launch.py`` in the pod's network namespace and a mount namespace
of its own, as its image's user. Its output goes to ``<home>/<container>/<restart>.log`` (the
kubelet's ``/var/log/pods``). Its termination message is the file bound at
``terminationMessagePath``, or the log's tail when that is empty, the exit code is not 0 and
the policy is ``FallbackToLogsOnError``.

Restarts follow the kubelet's back-off: 10 s after the first exit, doubling to 5 minutes, reset
after 10 minutes of running; the container waits with reason ``CrashLoopBackOff`` meanwhile.
Resource limits are not enforced (no cgroups here): they are scheduling facts only.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modeldeploy
from tests.support.kubelet import images, probes
from tests.support.kubelet.network import Sandbox
from tests.support.kubelet.volumes import Mount

LAUNCH = Path(__file__).with_name("launch.py")
PACKAGE_SOURCE = Path(modeldeploy.__file__).resolve().parents[1]
"""Where ``modeldeploy`` is imported from (an editable install's source): the images hold it."""
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0


def rfc3339(moment: float | None = None) -> str:
    when = datetime.datetime.fromtimestamp(moment or time.time(), datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def user_of(pod: dict[str, Any], container: dict[str, Any],
            image: images.Image) -> tuple[int | None, int | None]:  # fmt: skip
    """The uid and gid the process runs as: the container's securityContext, else the pod's,
    else the image's USER (its group the same number, as USER n:n in our Dockerfiles)."""
    own = container.get("securityContext") or {}
    pod_level = pod["spec"].get("securityContext") or {}
    uid = own.get("runAsUser", pod_level.get("runAsUser", image.user))
    gid = own.get("runAsGroup", pod_level.get("runAsGroup", uid))
    return uid, gid


def runs_as_root_refused(pod: dict[str, Any], container: dict[str, Any], uid: int | None) -> bool:
    """runAsNonRoot with a process that would run as root: the kubelet refuses to start it."""
    own = container.get("securityContext") or {}
    pod_level = pod["spec"].get("securityContext") or {}
    non_root = own.get("runAsNonRoot", pod_level.get("runAsNonRoot", False))
    return bool(non_root) and not uid


@dataclass
class ContainerRun:
    spec: dict[str, Any]
    home: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    probes: dict[probes.Kind, probes.ProbeState] = field(default_factory=dict)
    backoff: float = 0.0
    retry_at: float = 0.0
    user: tuple[int | None, int | None] = (None, None)
    killed_for: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def started(self) -> bool:
        startup = self.probes.get(probes.Kind.STARTUP)
        return self.running and (startup is None or startup.result is True)

    @property
    def ready(self) -> bool:
        if not self.started:
            return False
        readiness = self.probes.get(probes.Kind.READINESS)
        return readiness is None or readiness.result is True

    def log_path(self) -> Path:
        return self.home / self.name / f"{self.restarts}.log"

    def termination_file(self) -> Path:
        return self.home / self.name / f"{self.restarts}.termination-log"

    def start(self, sandbox: Sandbox, argv: list[str], env: dict[str, str], mounts: list[Mount],
              pod: dict[str, Any], image: images.Image) -> None:  # fmt: skip
        own = self.home / self.name
        own.mkdir(parents=True, exist_ok=True)
        termination = self.termination_file()
        termination.touch()
        termination.chmod(0o666)
        path = self.spec.get("terminationMessagePath") or "/dev/termination-log"
        security = self.spec.get("securityContext") or {}
        self.user = user_of(pod, self.spec, image)
        spec = {
            "argv": argv,
            "env": env,
            "mounts": [
                m.spec()
                for m in [*mounts, Mount(str(termination), path, False), self._passwd(image)]
            ],
            "staging": f"/run/modeldeploy-kubelet/{sandbox.netns}/{self.name}",
            "readOnlyRootFilesystem": bool(security.get("readOnlyRootFilesystem")),
            "workingDir": self.spec.get("workingDir"),
            "imagePaths": sorted({sys.base_prefix, sys.prefix, str(PACKAGE_SOURCE)}),
            "uid": self.user[0],
            "gid": self.user[1],
        }
        instructions = own / f"{self.restarts}.launch.json"
        instructions.write_text(json.dumps(spec))
        command = ["ip", "netns", "exec", sandbox.netns, "unshare", "--mount",
                   "--propagation", "private", sys.executable, str(LAUNCH), str(instructions)]  # fmt: skip
        with self.log_path().open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )  # fmt: skip
        self.started_at = time.time()
        self.state = {"running": {"startedAt": rfc3339(self.started_at)}}
        self.probes = probes.states(self.spec, time.monotonic())
        self.killed_for = ""

    def _passwd(self, image: images.Image) -> Mount:
        """The image's ``/etc/passwd``: the host's accounts and those the image adds (its
        programs may look their user up)."""
        passwd = self.home / self.name / "passwd"
        host = Path("/etc/passwd").read_text()
        passwd.write_text(host.rstrip("\n") + "\n" + "".join(f"{a}\n" for a in image.accounts))
        passwd.chmod(0o644)
        return Mount(str(passwd), "/etc/passwd", True)

    def exited(self, fallback_to_logs: bool) -> dict[str, Any]:
        """The terminated state of the process that just ended."""
        assert self.process is not None
        code = self.process.returncode
        if code < 0:  # killed by a signal: 128 + its number, as a shell and runc report it
            code = 128 - code
        message = self.termination_file().read_text(errors="replace")
        if not message and code != 0 and fallback_to_logs:
            message = self.log_path().read_text(errors="replace")[-2048:]
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(),
        }
        if message:
            terminated["message"] = message[-4096:]
        return {"terminated": terminated}

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, as the kubelet stops a container."""
        if not self.running:
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            self.process.wait()

    def schedule_restart(self, now: float) -> None:
        """The back-off before the next start: reset after a long enough run."""
        ran = now - self.started_at
        self.backoff = BACKOFF_START if ran > BACKOFF_RESET or not self.backoff else min(
            self.backoff * 2, BACKOFF_MAX)  # fmt: skip
        self.retry_at = time.monotonic() + self.backoff

    def status(self) -> dict[str, Any]:
        found = {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.process is not None:
            found["containerID"] = f"process://{self.process.pid}"
        return found
