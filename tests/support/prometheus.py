"""A real Prometheus server for the canary tests.

The binary is Debian's ``prometheus`` package, unpacked by ``make envtest``. It scrapes every
second so that a test's canary step of a few seconds has enough samples, with the labels the
chart's PodMonitor relabels onto each series (namespace, pod, modeldeploy_deployment,
modeldeploy_revision; docs/canary.md#labels). Its targets come from one of two places:

- ``file_targets``: the file the local executor keeps (``file_sd``), labels included;
- ``cluster_pods``: on the KServe cluster, Kubernetes service discovery of the pods, as a
  Prometheus in the cluster finds them, through the API server with a ServiceAccount token whose
  ClusterRole may only read pods; the predictor pods (those with ``modeldeploy.io/revision``) are
  scraped at their IP on the runtime's port. Debian's build has no Kubernetes discovery, so
  this one runs ``prometheus-kubernetes``: Prometheus built from its Go module by ``make
  envtest`` with that discovery alone.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.controlplane import Assets, _die_with_parent, free_port
from tests.support.processes import stop_group

# What the chart's PodMonitor relabels (charts/modeldeploy/templates/podmonitor.yaml).
RELABEL = [
    {"action": "replace", "source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"action": "replace", "source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    {"action": "replace", "source_labels": ["__meta_kubernetes_pod_label_modeldeploy_io_deployment"],
     "target_label": "modeldeploy_deployment"},
    {"action": "replace", "source_labels": ["__meta_kubernetes_pod_label_modeldeploy_io_revision"],
     "target_label": "modeldeploy_revision"},
]  # fmt: skip
READ_PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
"""The ClusterRole the ``cluster_pods`` discovery needs: pods only."""


def file_targets(targets: Path) -> dict[str, Any]:
    """Scrape what the local executor lists in ``targets`` (made empty if missing)."""
    if not targets.exists():
        targets.parent.mkdir(parents=True, exist_ok=True)
        targets.write_text("[]")
    return {"job_name": "modeldeploy-runtimes",
            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}  # fmt: skip


def cluster_pods(
    api_server: str, ca_file: str, token_file: Path, port: int = 8080
) -> dict[str, Any]:
    """Scrape every pod labelled ``modeldeploy.io/revision`` at ``<pod IP>:port``/metrics, found
    by Kubernetes service discovery, with the PodMonitor's relabelling."""
    return {
        "job_name": "modeldeploy-predictors",
        "kubernetes_sd_configs": [{"role": "pod", "api_server": api_server,
                                   "tls_config": {"ca_file": ca_file},
                                   "authorization": {"credentials_file": str(token_file)}}],
        "relabel_configs": [
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_label_modeldeploy_io_revision"],
             "regex": ".+"},
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_number"],
             "regex": str(port)},
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running"},
            *RELABEL,
        ],
    }  # fmt: skip


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        assets: Assets,
        workdir: Path,
        scrape: dict[str, Any],
        scrape_interval: str = "1s",
        host: str = "127.0.0.1",
        binary: str = "prometheus",
    ) -> Prometheus:
        """Prometheus (``binary`` among the envtest binaries) on ``host`` with the one scrape
        config ``scrape`` (``file_targets`` or ``cluster_pods``); returns once it is ready."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"scrape_timeout": scrape_interval, **scrape}],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = workdir / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    assets.binary(binary),
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address={host}:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        server = cls(process, f"http://{host}:{port}", log)
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
