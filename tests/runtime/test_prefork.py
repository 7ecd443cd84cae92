"""The local executor's pre-imported template (tests/support/prefork.py) runs ``modeldeploy`` as
the console script does: same exit status, output, working folder and environment; its children
are stopped and reported as processes are, and die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.server import running
from tests.support.controlplane import free_port
from tests.support.prefork import Forked, Template, handles
from tests.support.processes import stop_group

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    made = Template(tmp_path_factory.mktemp("prefork"))
    yield made
    made.stop()


def cold(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    done = subprocess.run(
        [str(BIN / "modeldeploy"), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


def forked(template: Template, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    output = cwd / f"forked-{time.monotonic_ns()}.log"
    code = template.spawn(argv, env, cwd, output).wait(60)
    return code, output.read_text()


@pytest.mark.parametrize(
    ("argv", "env", "files"),
    [
        (["modeldeploy", "version"], {}, {}),
        # A relative path is read from the working folder given.
        (["modeldeploy", "validate", "spec.yaml"], {}, {"spec.yaml": "kind: ModelDeployment\n"}),
        (["modeldeploy", "validate", "missing.yaml"], {}, {}),
        # The environment is the one given, not the template's: the spec comes from it.
        (["modeldeploy", "stage", "--step", "build"], {"MODELDEPLOY_DEPLOYMENT": "{]"}, {}),
        (["modeldeploy", "stage", "--step", "build"], {}, {}),
        (["modeldeploy", "no-such-command"], {}, {}),
    ],
    ids=["version", "relative-path", "missing-file", "env-spec", "no-env-spec", "usage-error"],
)
def test_a_forked_modeldeploy_exits_and_prints_as_the_console_script_does(
    template: Template, tmp_path: Path, argv: list[str], env: dict[str, str],
    files: dict[str, str],
) -> None:  # fmt: skip
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env}
    expected = cold(argv, environment, tmp_path)
    assert forked(template, argv, environment, tmp_path) == expected
    assert handles(argv, BIN)


def _serve(template: Template, artifact: Path, folder: Path) -> tuple[Forked, str]:
    port = free_port()
    argv = [str(BIN / "modeldeploy"), "serve", str(artifact), "--http-port", str(port),
            "--grpc-port", str(free_port())]  # fmt: skip
    child = template.spawn(argv, dict(os.environ), folder, folder / f"serve-{port}.log")
    url = f"http://127.0.0.1:{port}/v2/models/dtypes/ready"
    deadline = time.monotonic() + 60
    while True:
        assert child.poll() is None, (folder / f"serve-{port}.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return child, url
        except OSError:
            assert time.monotonic() < deadline, "not ready in 60 s"
            time.sleep(0.2)


def test_a_forked_server_answers_and_a_sigterm_to_its_group_is_its_exit_status(
    template: Template, dtypes_artifact: Path, tmp_path: Path
) -> None:
    child, _ = _serve(template, dtypes_artifact, tmp_path)
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.2)
    assert os.getpgid(child.pid) == child.pid  # a session of its own, as start_new_session
    # `ps` shows the program it runs, not the template.
    shown = Path(f"/proc/{child.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert shown.startswith(f"{BIN / 'modeldeploy'} serve {dtypes_artifact} "), shown
    stop_group(child)
    with running(dtypes_artifact, tmp_path) as cold_server:
        pass  # the same runtime started cold, and stopped the same way
    assert child.returncode == cold_server.process.returncode is not None
    assert child.poll() == child.returncode


def test_a_sigkill_is_a_negative_status_and_the_template_takes_its_children_with_it(
    tmp_path: Path, dtypes_artifact: Path
) -> None:
    own = Template(tmp_path)
    try:
        killed, _ = _serve(own, dtypes_artifact, tmp_path)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
        orphan, url = _serve(own, dtypes_artifact, tmp_path)
    finally:
        own.stop()
    # The executor stops the template last; a child still running dies with it (PDEATHSIG).
    assert orphan.wait(30) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while Path(f"/proc/{orphan.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{orphan.pid}").exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_template_in_a_folder_deeper_than_a_socket_path_allows_runs_and_cleans_up(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 120)  # a Unix socket's path holds at most 107 bytes
    deep.mkdir()
    own = Template(deep)
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    try:
        got = forked(own, ["modeldeploy", "version"], environment, tmp_path)
    finally:
        own.stop()
    assert got == cold(["modeldeploy", "version"], environment, tmp_path)
    assert (deep / "prefork.log").exists()  # the log stays with the caller's folder
    assert not own.socket.parent.exists()  # the short folder made for the socket is gone
