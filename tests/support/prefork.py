"""A pre-imported template the local executor forks its ``modeldeploy`` processes from.

A test speed-up, not a stand-in: each child runs the real program (``modeldeploy.cli:app``, what
the ``modeldeploy`` console script runs) with the container's argv, environment, working folder
and output file, in a session and process group of its own, serving on real sockets. What it
saves is the interpreter's start: a ``modeldeploy serve`` spent about 2 s of CPU importing
kserve (pandas, the kubernetes client, fastapi) before it served, and a staging build of a
PyTorch model about 4 s importing PyTorch; a fork of an interpreter that has them costs
milliseconds. On this project's 2 cores the suite runs a few hundred such processes
(docs/benchmarks.md#where-make-tests-cpu-went-before-the-template-2026-12-03-earlier).

What differs from a fresh ``exec``, and why it does not matter here: modules imported by the
template read their import-time settings from the template's environment, the executor's
(``KSERVE_LOGLEVEL`` is the one kserve reads; no test sets it). Settings Python reads as it
starts are the template's too; ``PYTHONUNBUFFERED``, which the images set, is applied by hand.
Each child's command line (``ps``, ``/proc/<pid>/cmdline``) is set to its argv.

The local executor (``tests.support.executor``) and the runtime tests' servers
(``tests/runtime/server.py``) use it. The KServe cluster's node agent and ``make demo``'s pods
start each container cold, from its command, as a kubelet does, so the console script itself
stays covered, and ``tests/runtime/test_prefork.py`` compares the two.

Protocol, one Unix-socket connection per process: the executor sends one JSON line
``{"argv", "env", "cwd", "output"}``; the template answers ``{"pid": N}`` once forked, then
``{"status": code}`` when the child exits (negative: killed by that signal, as ``Popen`` says).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import setproctitle

from tests.support.controlplane import _die_with_parent, _tail

# What the children import that is slow to import: kserve and PyTorch above all. Our own modules
# are imported too, so their pydantic models are built once. onnxruntime is left out: it starts a
# thread as it is imported, and a fork keeps only the forking thread (it imports in 0.1 s anyway).
PRELOAD = ("torch", "kserve", "modeldeploy.cli", "modeldeploy.runtime.server")
PROGRAM = "modeldeploy"


def handles(argv: list[str], bin_dir: Path) -> bool:
    """Whether ``argv`` runs our console script from ``bin_dir``, which the template can run."""
    return bool(argv) and (argv[0] == PROGRAM or Path(argv[0]) == bin_dir / PROGRAM)


class Forked:
    """A child of the template, as far as the executor asks of a ``subprocess.Popen``: its pid,
    ``poll`` and ``wait``. Its exit status arrives on the connection that asked for it."""

    def __init__(self, connection: socket.socket, pid: int, buffered: bytes) -> None:
        self._connection = connection
        self._buffer = buffered
        self._lock = threading.Lock()  # the executor's threads poll and stop the same process
        self.pid = pid
        self.returncode: int | None = None
        self._read(0.0)

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                self._read(0.0)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(PROGRAM, timeout or 0)
                self._read(left)
            return self.returncode

    def _read(self, timeout: float | None) -> None:
        """Read what has come, waiting up to ``timeout`` seconds (0: not at all)."""
        if b"\n" not in self._buffer:
            self._connection.settimeout(timeout)
            try:
                chunk = self._connection.recv(4096)
            except (BlockingIOError, TimeoutError):
                return
            if not chunk:  # the template went away before it could say: as a killed process
                self.returncode = -signal.SIGKILL
                self._connection.close()
                return
            self._buffer += chunk
        if b"\n" in self._buffer:
            self.returncode = int(json.loads(self._buffer.split(b"\n")[0])["status"])
            self._connection.close()


class Template:
    """The executor's handle on its template process, started on first use."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "prefork.log"
        self.socket = folder / "prefork.sock"
        self._made: Path | None = None
        if len(os.fsencode(self.socket)) > 100:  # a Unix socket's path holds at most 107 bytes
            self._made = Path(tempfile.mkdtemp(prefix="modeldeploy-prefork-"))
            self.socket = self._made / "sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._starting = threading.Lock()  # the executor's threads may ask at once

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, output: Path) -> Forked:
        self._start()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(self.socket))
        request = {"argv": argv, "env": env, "cwd": str(cwd), "output": str(output)}
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while b"\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                raise RuntimeError(f"the prefork template failed: {_tail(self.log)}")
            answer += chunk
        line, rest = answer.split(b"\n", 1)
        return Forked(connection, int(json.loads(line)["pid"]), rest)

    def _start(self) -> None:
        with self._starting:
            if self._process is None or self._process.poll() is not None:
                self._launch()

    def _launch(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)  # a folder made here, after a stop
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.prefork", str(self.socket)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while not self.socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the prefork template did not start: {_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the template; its children die with it (``PR_SET_PDEATHSIG``)."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None
        self.socket.unlink(missing_ok=True)
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)


# --- the template process --------------------------------------------------------------------


def _serve(path: str) -> None:
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(64)
    os.rename(path + ".tmp", path)  # the executor waits for the name: bound and listening
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid → the connection to answer
    reading: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                connection, _ = listener.accept()
                reading[connection] = b""
                selector.register(connection, selectors.EVENT_READ)
            elif key.fileobj == wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
                _reap(waiting)
            else:
                assert isinstance(key.fileobj, socket.socket)
                connection = key.fileobj
                chunk = connection.recv(1 << 20)
                reading[connection] += chunk
                if chunk and b"\n" not in reading[connection]:
                    continue
                selector.unregister(connection)
                data = reading.pop(connection)
                if not chunk:
                    connection.close()
                    continue
                request = json.loads(data.split(b"\n")[0])
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    close = [listener.fileno(), wake_read, wake_write]
                    close += [c.fileno() for c in (*waiting.values(), *reading, connection)]
                    _child(request, close)
                waiting[pid] = connection
                connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _reap(waiting)


def _reap(waiting: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = waiting.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                code = os.waitstatus_to_exitcode(status)
                connection.sendall(json.dumps({"status": code}).encode() + b"\n")
            connection.close()


def _child(request: dict[str, Any], close: list[int]) -> None:
    """In the forked child: become the container's process, run the program, never return."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _die_with_parent()  # the template's death ends its children, as the executor's does
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        # What `ps`, /proc/<pid>/cmdline and tests.bench.profile_suite show: the program, not
        # the template. Before the environment is replaced: setproctitle finds the memory it
        # writes to through it.
        setproctitle.setproctitle(" ".join(request["argv"]))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [PROGRAM, *request["argv"][1:]]
        if request["env"].get("PYTHONUNBUFFERED"):  # Python reads it only as it starts
            sys.stdout, sys.stderr = (
                io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), write_through=True)
                for fd in (1, 2)
            )
        code = _run(sys.argv[1:])
    except BaseException:  # the child must exit, not return into the template
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run(args: list[str]) -> int:
    """``modeldeploy <args>``, with the exit status the console script would give."""
    from modeldeploy.cli import app

    try:
        app(args=args, prog_name=PROGRAM)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m tests.support.prefork <socket path>
    _serve(sys.argv[1])
