"""The kubelet's part for the chart's ``helm test`` pods, in the test control plane.

The control plane has no kubelet, so a pod nobody else runs stays Pending and ``helm test``
waits for it forever. This runs the pods the chart labels as its tests
(``app.kubernetes.io/part-of=modeldeploy``, ``app.kubernetes.io/component=test``), and nothing
else, as the kubelet would in outline: binds the pod to the local node, runs each container's
command as a local process, and writes the phase and each container's exit code back.

What a kubelet does that this does not: images (the command runs from this checkout's
environment), volumes, probes, restarts. The pod's ServiceAccount token, which a kubelet
projects into ``/var/run/secrets``, is requested the same way (the TokenRequest API, so RBAC
applies to it exactly as in a cluster) and handed over as a kubeconfig, since a process cannot
have that path mounted.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

log = logging.getLogger("hook-pods")
SELECTOR = "app.kubernetes.io/part-of=modeldeploy,app.kubernetes.io/component=test"
NODE = "local-executor"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_kubeconfig(api: client.ApiClient, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of ``namespace/account``: what the kubelet would
    project into the pod, from the same API."""
    request = {"spec": {"expirationSeconds": 600, "audiences": []}}
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request
    )
    configuration = api.configuration
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": configuration.host,
                                               "certificate-authority": configuration.ssl_ca_cert}}],
        "users": [{"name": "u", "user": {"token": token.status.token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                                               "namespace": namespace}}],
        "current-context": "c",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


class HookPods:
    """Runs the chart's test pods (see the module docstring); one thread per pod."""

    def __init__(self, api: client.ApiClient, workdir: Path, bin_dir: Path) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.started: set[str] = set()
        self.lock = threading.Lock()

    def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if event_type == "DELETED" or (pod.get("spec") or {}).get("nodeName"):
            return
        with self.lock:
            if meta["uid"] in self.started:
                return
            self.started.add(meta["uid"])
        threading.Thread(target=self._run_logged, args=(pod,), daemon=True).start()

    def _run_logged(self, pod: dict[str, Any]) -> None:
        try:
            self._run(pod)
        except Exception:  # one pod's failure must not stop the watch
            log.exception("hook pod %s", pod["metadata"]["name"])

    def _run(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        self.core.create_namespaced_pod_binding(
            name, namespace,
            {"metadata": {"name": name}, "target": {"kind": "Node", "name": NODE}},
            _preload_content=False,
        )  # fmt: skip
        home = self.workdir / f"hook-{meta['uid']}"
        home.mkdir(parents=True, exist_ok=True)
        account = pod["spec"].get("serviceAccountName") or "default"
        kubeconfig = token_kubeconfig(self.api, namespace, account, home / "kubeconfig")
        self.core.patch_namespaced_pod_status(
            name, namespace, {"status": {"phase": "Running", "startTime": _now()}}
        )
        statuses, failed = [], False
        for container in pod["spec"]["containers"]:
            code = self._run_container(container, home, kubeconfig)
            failed = failed or code != 0
            statuses.append(
                {"name": container["name"], "image": container["image"], "imageID": "",
                 "ready": False, "restartCount": 0,
                 "state": {"terminated": {"exitCode": code,
                                          "reason": "Completed" if code == 0 else "Error",
                                          "startedAt": _now(), "finishedAt": _now()}}}
            )  # fmt: skip
        phase = "Failed" if failed else "Succeeded"
        self.core.patch_namespaced_pod_status(
            name, namespace, {"status": {"phase": phase, "containerStatuses": statuses}}
        )

    def _run_container(self, container: dict[str, Any], home: Path, kubeconfig: Path) -> int:
        env = {
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(home),
            "KUBECONFIG": str(kubeconfig),
            **{e["name"]: e.get("value", "") for e in container.get("env") or []},
        }
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        with (home / f"{container['name']}.log").open("wb") as out:
            result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=home, timeout=300, check=False)  # fmt: skip
        return result.returncode
