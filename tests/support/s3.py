"""A real S3-compatible server for tests: versitygw with its POSIX back end, on loopback.

Built from its Go module by ``hack/envtest/setup.sh``. Objects are plain files under
``workdir/data/<bucket>/``, which lets tests look behind the S3 API when they need to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.controlplane import (
    Assets,
    ControlPlaneError,
    _die_with_parent,
    _tail,
    free_port,
)


@dataclass
class S3Server:
    """versitygw serving ``workdir/data`` over S3 at ``endpoint``."""

    workdir: Path
    assets: Assets
    host: str = "127.0.0.1"
    """The address it listens on: a node's bridge address makes it reachable from pods."""
    port: int = 0
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What boto3, kserve-storage and ``modeldeploy stage`` need to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
        }

    def start(self, timeout: float = 30.0) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.workdir / "meta").mkdir(exist_ok=True)
        self.port = free_port()
        log = open(self.workdir / "versitygw.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [
                self.assets.binary("versitygw"),
                "--access",
                self.access_key,
                "--secret",
                self.secret_key,
                "--port",
                f"{self.host}:{self.port}",
                "posix",
                # Object metadata (ETags of multipart parts among it) in a side folder, so the
                # server does not depend on extended attributes of the test machine's filesystem.
                "--sidecar",
                str(self.workdir / "meta"),
                str(data),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ControlPlaneError(
                    f"versitygw exited with {self.process.returncode}:\n{_tail(self.workdir / 'versitygw.log')}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise ControlPlaneError(
            f"versitygw not listening after {timeout:.0f}s:\n{_tail(self.workdir / 'versitygw.log')}"
        )

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
