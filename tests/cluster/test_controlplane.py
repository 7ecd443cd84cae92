"""The test control plane itself: start-up failures explain themselves, and nothing is left
running, whether the owner stops it, fails, or is killed outright."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import Assets, ControlPlane, ControlPlaneError
from tests.support.controlplane import REPO_ROOT

pytestmark = pytest.mark.cluster  # starts control planes of its own


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def wait_dead(pids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets.provide()


def test_start_stop_leaves_no_process(assets: Assets, tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, assets)
    plane.start()
    pids = [p.pid for p in plane.processes.values()]
    assert len(pids) == 2
    assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    plane.stop()
    assert wait_dead(pids) == []


def test_startup_failure_shows_the_log_tail(assets: Assets, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "etcd").symlink_to(assets.bin_dir / "etcd")
    broken = bin_dir / "kube-apiserver"
    broken.write_text(
        "#!/bin/sh\necho 'Error: unknown flag: --feature-of-the-future' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    plane = ControlPlane(tmp_path / "run", Assets(bin_dir, assets.crd_dir))
    with pytest.raises(ControlPlaneError) as err:
        plane.start(timeout=30)
    message = str(err.value)
    assert "kube-apiserver exited with 1" in message
    assert "unknown flag: --feature-of-the-future" in message
    assert "--- etcd.log" in message
    assert plane.processes == {}  # etcd, which had started, was stopped again


def test_processes_die_with_a_killed_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from tests.support import Assets, ControlPlane\n"
            "p = ControlPlane(Path(sys.argv[1]), Assets.provide()); p.start()\n"
            "print(*[x.pid for x in p.processes.values()], flush=True); time.sleep(600)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    pids = [int(p) for p in owner.stdout.readline().split()]
    assert len(pids) == 2
    assert all(alive(p) for p in pids)
    owner.send_signal(signal.SIGKILL)  # no finalizer, no atexit: only the kernel can help
    owner.wait()
    assert wait_dead(pids) == []


def test_envtest_up_and_down_for_people(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    run = [sys.executable, "-m", "tests.support"]
    up = subprocess.run(
        [*run, "up", "--dir", str(state)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={state / 'kubeconfig'}" in up.stdout
    pids = [int((state / f"{n}.pid").read_text()) for n in ("etcd", "kube-apiserver")]
    try:
        # It outlives the command that started it, and kubectl reaches it with the kubeconfig.
        assert all(alive(p) for p in pids)
        kubectl = str(Assets.provide().bin_dir / "kubectl")
        crds = subprocess.run(
            [kubectl, "--kubeconfig", str(state / "kubeconfig"), "get", "crd", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert (
            "customresourcedefinition.apiextensions.k8s.io/modeldeployments.modeldeploy.io" in crds
        )
        again = subprocess.run([*run, "up", "--dir", str(state)], capture_output=True, text=True)
        assert again.returncode == 1
        assert "already up" in again.stdout
    finally:
        down = subprocess.run([*run, "down", "--dir", str(state)], capture_output=True, text=True)
    assert down.returncode == 0
    assert "stopped: kube-apiserver, etcd" in down.stdout
    assert wait_dead(pids) == []
