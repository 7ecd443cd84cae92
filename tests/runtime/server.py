"""Run ``modeldeploy serve`` as a real process on loopback ports, as a pod would run it."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.controlplane import REPO_ROOT, Child, free_port
from tests.support.prefork import Template
from tests.support.processes import stop_group


@dataclass
class RuntimeProcess:
    process: Child
    http_port: int
    grpc_port: int
    log: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running(
    artifact: Path, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[RuntimeProcess]:
    """Start the runtime on ``artifact``; yield once it answers /v2/health/live; stop it after."""
    http_port, grpc_port = free_port(), free_port()
    log = workdir / f"runtime-{http_port}.log"
    argv = ["modeldeploy", "serve", str(artifact),
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args]  # fmt: skip
    process = _template().spawn(argv, {**os.environ, **(env or {})}, REPO_ROOT, log)
    server = RuntimeProcess(process, http_port, grpc_port, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"runtime exited with {process.returncode}:\n{server.log_text()[-3000:]}"
                )
            with contextlib.suppress(OSError):
                if server.get("/v2/health/live")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"runtime not live after 90s:\n{server.log_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)


_TEMPLATE: Template | None = None


def _template() -> Template:
    """This test process's pre-imported template (tests/support/prefork.py), as the local
    executor forks its processes: each server is the real ``modeldeploy serve`` without seconds
    of imports. ``tests/runtime/test_prefork.py`` compares it with the console script."""
    global _TEMPLATE
    if _TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="modeldeploy-prefork-log-"))
        _TEMPLATE = Template(folder)
        atexit.register(shutil.rmtree, folder, True)  # last: atexit runs in reverse order
        atexit.register(_TEMPLATE.stop)
    return _TEMPLATE


def stop(process: Child, grace: float = 20.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is still there after ``grace``."""
    stop_group(process, grace)


def replay(url: str, body: bytes, header_length: int, model: str = "digits") -> dict[str, Any]:
    """POST a v2 REST body as is (a shadow's evidence keeps one) to ``url``; the numeric
    outputs of the answer."""
    from modeldeploy.runtime import protocol

    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", data=body, method="POST",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as reply:
        length = reply.headers.get("Inference-Header-Content-Length")
        return protocol.parse_answer(reply.read(), int(length) if length else None)
