"""A real Prometheus server for the canary tests, scraping the executor's runtime processes.

The binary is Debian's ``prometheus`` package, unpacked by ``make envtest``. It discovers its
targets from the file the local executor keeps (``file_sd``), with the labels a cluster's
relabelling would give (namespace, modeldeploy_deployment, modeldeploy_revision), and scrapes
every second so that a test's canary step of a few seconds has enough samples.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.controlplane import Assets, _die_with_parent, free_port
from tests.support.processes import stop_group


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(
        cls, assets: Assets, workdir: Path, targets: Path, scrape_interval: str = "1s"
    ) -> Prometheus:
        workdir.mkdir(parents=True, exist_ok=True)
        if not targets.exists():
            targets.parent.mkdir(parents=True, exist_ok=True)
            targets.write_text("[]")
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {
                    "job_name": "modeldeploy-runtimes",
                    "scrape_timeout": scrape_interval,
                    "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    assets.binary("prometheus"),
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        server = cls(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + 60
        while not server.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"prometheus did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        return server

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        stop_group(self.process)
