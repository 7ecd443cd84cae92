"""The operator and the local executor as real processes, for ``make demo`` and the tests.

The operator runs exactly as in a pod (``modeldeploy operator``), only with a kubeconfig; the
executor (:mod:`.executor`) plays the kubelet and KServe next to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from modeldeploy.controller.run import READY
from tests.support.containers import Podman
from tests.support.controlplane import REPO_ROOT, _die_with_parent, stop_group

__all__ = ["LocalStack", "ManagedProcess", "stop_group"]


def cpu_time(pid: int) -> tuple[float, str]:
    """A process's CPU seconds (user + system) and its start time (clock ticks since boot: a
    reused pid has another), from ``/proc/<pid>/stat``. OSError once the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), fields[19]


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class LocalStack:
    """Spawns operators and an executor against one cluster; stops them all at the end."""

    kubeconfig: Path
    workdir: Path
    pvc_root: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"{name}-{len(self.processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**os.environ, "KUBECONFIG": str(self.kubeconfig), **(env or {})},
                preexec_fn=_die_with_parent,
            )
        managed = ManagedProcess(name, process, log)
        self.processes.append(managed)
        return managed

    def executor(self, instant: bool = False) -> ManagedProcess:
        args = [
            "-m", "tests.support.executor",
            "--kubeconfig", str(self.kubeconfig),
            "--pvc-root", str(self.pvc_root),
            "--workdir", str(self.workdir / "executor"),
        ]  # fmt: skip
        return self._spawn("executor", args + (["--instant"] if instant else []))

    def operator(
        self,
        *args: str,
        namespaces: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait: float = 60.0,
    ) -> ManagedProcess:
        """Start ``modeldeploy operator``; return once every watch has listed what it watches."""
        scope = [arg for ns in namespaces or [] for arg in ("--namespace", ns)]
        managed = self._spawn(
            "operator",
            [
                "-m",
                "modeldeploy",
                "operator",
                "--liveness-port",
                "0",
                *scope,
                *args,
            ],
            # The operator reads golden samples from the store, as the executor maps it. The
            # executor plays KServe without spec.canary (0.15-0.19): the operator is told so,
            # as the schema it installs (0.20's) would say otherwise; the KServe cluster's
            # tests pass "auto" and get the real answer. No gateway routes the executor's
            # HTTPRoutes, so nothing needs a scale-down delay; the KServe cluster's tests,
            # behind Traefik, set one.
            {
                "MODELDEPLOY_PVC_ROOT": str(self.pvc_root),
                "MODELDEPLOY_KSERVE_CANARY": "off",
                "MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS": "0",
                **(env or {}),
            },
        )
        deadline = time.monotonic() + wait
        while f"] {READY} " not in managed.log_text():
            if managed.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start:\n{managed.log_text()[-3000:]}")
            time.sleep(0.1)
        return managed

    def stop(self) -> None:
        for managed in reversed(self.processes):
            managed.stop()
        self.processes.clear()
        # An executor killed before it cleaned up leaves its podman containers running.
        if Podman.available():
            Podman().remove_orphans()
