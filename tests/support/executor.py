"""A small local executor that plays the kubelet, the Job controller, the garbage collector and
the KServe controller for the objects ModelDeploy creates, on this one machine.

A real cluster has all of those; the test control plane (a bare kube-apiserver + etcd) has none,
so without this nothing would ever run a staging Job or serve an InferenceService. It is test
support: ``make demo`` and the tests use it, the operator never does, and it only touches
objects labelled ``app.kubernetes.io/managed-by: modeldeploy``.

- Staging Jobs: runs the Job's container command as a local process, with the Job's environment
  (pvc:// volumes map to folders under ``--pvc-root``), creates the Pod object, and writes the
  Pod's termination message and the Job's conditions back as the kubelet and Job controller
  would, honouring backoffLimit, activeDeadlineSeconds and the podFailurePolicy exit codes.
- InferenceServices: for each new storageUri (or new predictor labels) starts a revision, a
  ``modeldeploy serve`` on the artifact on loopback ports (for runtime ``kserve-tritonserver``,
  Triton from ``tests.support.triton``), and waits until it is ready. Traffic
  follows KServe's Knative reconciler: with ``canaryTrafficPercent`` the latest ready revision
  gets that share and the last revision rolled out to 100% the rest; without it the latest ready
  revision gets everything. A weighted router per InferenceService (its status URL) splits the
  requests; the status carries ``components.predictor.traffic`` with ``latest``/``prev`` tags and
  each revision's own URL, ``latestRolledoutRevision`` and ``LatestDeploymentReady``. Revisions
  that get no traffic are stopped. Standard mode is the same with the percent ignored (KServe
  ignores it there). Ready revisions are listed as Prometheus file_sd targets
  (``<workdir>/prometheus-targets.json``), labelled like pods after docs/canary.md's relabelling.
  HTTPRoutes are not routed (no gateway here); the Standard-mode tests read their weights.
- Garbage collection: objects whose owner ModelDeployment is gone are deleted.
- The chart's ``helm test`` pods: run as processes (``tests.support.hook_pods``).

``--instant`` answers staging with a made-up successful summary and marks InferenceServices
ready without starting anything: for the operator benchmark, which measures the operator alone.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from modeldeploy.api import mirror
from modeldeploy.api.serving import TRITON_RUNTIME
from tests.support import triton
from tests.support.containers import Mount, Podman, writable_by_all
from tests.support.controlplane import Child, _die_with_parent, free_port
from tests.support.hook_pods import SELECTOR as HOOK_PODS
from tests.support.hook_pods import HookPods
from tests.support.prefork import Template, handles
from tests.support.processes import stop_group
from tests.support.router import WeightedRouter

log = logging.getLogger("executor")
USER_AGENT = "modeldeploy-local-executor"
"""Its writes, as KServe's, the kubelet's and the Job controller's, are told apart from the
operator's in the API server's audit log (``bench_operator``)."""
MANAGED = "app.kubernetes.io/managed-by=modeldeploy"
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
MD = ("modeldeploy.io", "v1alpha1", "modeldeployments")
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
DEPLOYMENT_LABEL = "modeldeploy.io/deployment"
REVISION_LABEL = "modeldeploy.io/revision"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Revision:
    """One Knative revision (or one rollout of a Standard-mode Deployment): a runtime process."""

    name: str
    storage_uri: str
    labels: dict[str, str]
    generation: int
    runtime: str = ""
    process: Child | None = None
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    """Where Prometheus scrapes it: Triton's own metrics port, else the HTTP port."""
    ready: bool = False
    failure: str | None = None
    container: str | None = None
    """The podman container it runs in, when its runtime's image was built here."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Service:
    """What KServe keeps for one InferenceService: its revisions, which one was last rolled out
    to 100%, and the router in front of them."""

    router: WeightedRouter | None
    revisions: list[Revision] = field(default_factory=list)
    counter: int = 0
    generation: int = 0
    canary_percent: int | None = None
    rolled_out: Revision | None = None
    previous_rolled_out: Revision | None = None

    def route(self, knative: bool) -> list[tuple[Revision, int, bool]]:
        """(revision, percent, is latest) as KServe's Knative reconciler sets them: with
        canaryTrafficPercent, the latest ready revision gets that share and the last one rolled
        out the rest; without it (or in Standard mode) the latest ready revision gets all."""
        latest = self.revisions[-1]
        ready = [r for r in self.revisions if r.ready]
        if not ready:
            return []
        percent = self.canary_percent if knative else None
        if percent is None or percent >= 100 or self.rolled_out is None:
            newest = ready[-1]
            if newest is latest and self.rolled_out is not newest:
                self.previous_rolled_out, self.rolled_out = self.rolled_out, newest
            return [(newest, 100, newest is latest)]
        stable = self.rolled_out
        if not latest.ready or latest is stable:
            return [(stable, 100, latest is stable)]
        return [(latest, percent, True), (stable, 100 - percent, False)]

    def retire(self, serving: set[str]) -> list[Revision]:
        """Stop the revisions that get no traffic, except the latest and the stable one."""
        keep = serving | {self.revisions[-1].name}
        if self.rolled_out is not None:
            keep.add(self.rolled_out.name)
        retired = [r for r in self.revisions if r.name not in keep]
        self.revisions = [r for r in self.revisions if r.name in keep]
        return retired

    def status(self, traffic: list[tuple[Revision, int, bool]]) -> dict[str, Any]:
        latest = self.revisions[-1]
        ready = [r for r in self.revisions if r.ready]
        if self.router is not None:
            self.router.set_weights({r.http_port: p for r, p, _ in traffic})
        url = self.router.url if self.router is not None else "http://127.0.0.1:0"
        serving = bool(traffic)
        conditions = [  # none until something is ready or has failed, as KServe at first
            {"type": t, "status": "True" if serving else "False", "lastTransitionTime": _now(),
             **({} if serving else {"reason": "RevisionFailed", "message": latest.failure})}
            for t in ("IngressReady", "PredictorReady", "Ready")
            if serving or latest.failure
        ]  # fmt: skip
        latest_state: dict[str, Any] = {
            "type": "LatestDeploymentReady",
            "lastTransitionTime": _now(),
        }
        if latest.ready:
            latest_state["status"] = "True"
        elif latest.failure:
            latest_state.update(
                status="False", reason="RevisionFailed", message=latest.failure[:2000]
            )
        else:
            latest_state.update(status="Unknown", reason="RevisionMissing", message="starting")
        conditions.append(latest_state)
        predictor: dict[str, Any] = {
            "url": url,
            "latestCreatedRevision": latest.name,
            "traffic": [
                {"revisionName": r.name, "percent": p, "latestRevision": is_latest,
                 "tag": "latest" if is_latest else "prev", "url": r.url}
                for r, p, is_latest in traffic
            ],
        }  # fmt: skip
        if ready:
            predictor["latestReadyRevision"] = ready[-1].name
        if self.rolled_out is not None:
            predictor["latestRolledoutRevision"] = self.rolled_out.name
        if self.previous_rolled_out is not None:
            predictor["previousRolledoutRevision"] = self.previous_rolled_out.name
        status: dict[str, Any] = {
            "observedGeneration": self.generation,
            "conditions": conditions,
            "components": {"predictor": predictor},
        }
        if serving:
            status.update(url=url, address={"url": url})
        return status

    def close(self, podman: Podman | None) -> None:
        for revision in self.revisions:
            stop_revision(revision, podman)
        if self.router is not None:
            self.router.close()


class LocalExecutor:
    def __init__(
        self,
        kubeconfig: Path,
        pvc_root: Path,
        workdir: Path,
        instant: bool = False,
        workers: int = 4,
        containers: bool = True,
        prefork: bool = True,
    ) -> None:
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.api.user_agent = USER_AGENT
        self.api.configuration.connection_pool_maxsize = 32
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.pvc_root = pvc_root
        self.workdir = workdir
        self.instant = instant
        self.pool = ThreadPoolExecutor(max_workers=workers if not instant else 16)
        self.started_jobs: set[str] = set()
        self.services: dict[tuple[str, str], Service] = {}
        self.targets_file = workdir / "prometheus-targets.json"
        """Prometheus file_sd targets: every ready revision's metrics endpoint."""
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.bin = Path(sys.executable).parent
        self.podman = Podman() if containers and not instant and Podman.available() else None
        """Runs a container from its image when `make images` built it (``containers``)."""
        if self.podman is not None:
            self.podman.remove_orphans()
        self.hook_pods = HookPods(self.api, workdir, self.bin)
        """The chart's ``helm test`` pods, run as the kubelet would (testing/hook_pods.py)."""
        self.template = Template(workdir) if prefork else None
        """Forks ``modeldeploy`` processes from a pre-imported interpreter (tests/support/prefork.py)."""

    # --- staging Jobs -------------------------------------------------------------------

    def _local_path(self, uri: str) -> Path | None:
        parsed = urlparse(uri)
        if parsed.scheme == "pvc":
            return self.pvc_root / parsed.netloc / parsed.path.lstrip("/")
        if parsed.scheme == "file":
            return Path(parsed.path)
        return None

    def on_job(self, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c["type"] in ("Complete", "Failed") for c in conditions):
            return
        with self.lock:
            if uid in self.started_jobs:
                return
            self.started_jobs.add(uid)
        self.pool.submit(self._run_job_logged, job)

    def _run_job_logged(self, job: dict[str, Any]) -> None:
        try:
            self._run_job(job)
        except Exception:
            log.exception("job %s", job["metadata"]["name"])

    def _env(
        self,
        namespace: str,
        container: dict[str, Any],
        home: Path,
        mounts: dict[str, Path] | None = None,
        declared_only: bool = False,
    ) -> dict[str, str]:
        """The container's environment; a declared value naming a path under one of
        ``mounts`` (mount path → folder) names the folder instead. ``declared_only``: what the
        pod declares and its Secrets, nothing of this machine's (for a container)."""

        def mapped(value: str) -> str:
            for path, folder in (mounts or {}).items():
                if value == path or value.startswith(path.rstrip("/") + "/"):
                    return str(folder) + value[len(path.rstrip("/")) :]
            return value

        env = {} if declared_only else {"PATH": f"{self.bin}:{os.environ.get('PATH', '')}"}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref:
                secret = self.core.read_namespaced_secret(ref["name"], namespace)
                for key, value in (secret.data or {}).items():
                    env[key] = base64.b64decode(value).decode()
        for item in container.get("env") or []:
            env[item["name"]] = mapped(item.get("value", ""))
        if declared_only:
            return env
        env["MODELDEPLOY_PVC_ROOT"] = str(self.pvc_root)
        env["HOME"] = env["TMPDIR"] = str(home)
        return env

    def _patch_job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        meta = job["metadata"]
        self.batch.patch_namespaced_job_status(meta["name"], meta["namespace"], {"status": status})

    def _run_job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        started = _now()
        if not self.instant:  # an instant Job goes straight to its final status, in one write
            self._patch_job_status(job, {"startTime": started, "active": 1})
        deadline = time.monotonic() + (spec.get("activeDeadlineSeconds") or 3600)
        fail_codes: set[int] = set()
        for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
            if rule.get("action") == "FailJob":
                fail_codes.update(rule.get("onExitCodes", {}).get("values") or [])
        failures = 0
        while True:
            code = self._run_pod(job, deadline)
            if code == 0:
                self._patch_job_status(
                    job,
                    {
                        "startTime": started,
                        "active": 0,
                        "succeeded": 1,
                        "failed": failures,
                        "completionTime": _now(),
                        "conditions": [
                            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                             "message": "Reached expected number of succeeded pods", "lastTransitionTime": _now()},
                            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                             "message": "Reached expected number of succeeded pods", "lastTransitionTime": _now()},
                        ],
                    },
                )  # fmt: skip
                return
            failures += 1
            if code is None:
                reason, message = (
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            elif code in fail_codes:
                reason, message = (
                    "PodFailurePolicy",
                    f"Container stage failed with exit code {code} matching FailJob rule at index 0",
                )
            elif failures > (spec.get("backoffLimit") or 0):
                reason, message = (
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            else:
                continue
            self._patch_job_status(
                job,
                {
                    "startTime": started,
                    "active": 0,
                    "failed": failures,
                    "conditions": [
                        {"type": "FailureTarget", "status": "True", "reason": reason, "message": message,
                         "lastTransitionTime": _now()},
                        {"type": "Failed", "status": "True", "reason": reason, "message": message,
                         "lastTransitionTime": _now()},
                    ],
                },
            )  # fmt: skip
            log.info("job %s/%s failed: %s", meta["namespace"], meta["name"], reason)
            return

    def _run_pod(self, job: dict[str, Any], deadline: float) -> int | None:
        """One attempt: the init containers in order, then the (first) container, each as a
        process; the exit code of the last that ran, or None when the Job's deadline passed.

        Like the kubelet, each emptyDir volume is one folder shared by the containers that
        mount it; the processes see it through the environment: a variable whose value is a
        mount path, or under one, is rewritten to the folder. (Read-only mounts are not
        enforced: the processes run as this user.)"""
        meta = job["metadata"]
        namespace = meta["namespace"]
        template = job["spec"]["template"]
        pod_name = f"{meta['name']}-{uuid.uuid4().hex[:5]}"
        labels = {
            **(template.get("metadata", {}).get("labels") or {}),
            "batch.kubernetes.io/job-name": meta["name"],
            "job-name": meta["name"],
            "batch.kubernetes.io/controller-uid": meta["uid"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [
                    {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
                ],
            },
            "spec": {**template["spec"], "nodeName": "local-executor"},
        }  # fmt: skip
        self.core.create_namespaced_pod(namespace, pod)
        home = self.workdir / pod_name
        home.mkdir(parents=True, exist_ok=True)
        self._config_map_volumes(namespace, template["spec"], home)
        steps = [
            *((c, True) for c in template["spec"].get("initContainers") or []),
            (template["spec"]["containers"][0], False),
        ]
        statuses: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
        code: int | None = 0
        timed_out = False
        for container, init in steps:
            if code != 0:
                statuses[init].append(_waiting(container))
                continue
            code, message, container_id = self._run_container(
                namespace, template["spec"], container, home, deadline
            )
            timed_out = time.monotonic() >= deadline and code != 0
            statuses[init].append(
                {"name": container["name"], "image": container["image"], "imageID": "",
                 # as a kubelet says which runtime ran it; a local process has no container
                 **({"containerID": container_id} if container_id else {}),
                 "ready": False, "restartCount": 0,
                 "state": {"terminated": {
                     "exitCode": code,
                     "reason": "Completed" if code == 0 else ("DeadlineExceeded" if timed_out else "Error"),
                     "message": message[:4096], "startedAt": _now(), "finishedAt": _now()}}}
            )  # fmt: skip
        status: dict[str, Any] = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": statuses[False],
        }
        if statuses[True]:
            status["initContainerStatuses"] = statuses[True]
        self.core.patch_namespaced_pod_status(pod_name, namespace, {"status": status})
        shutil.rmtree(home / "volumes", ignore_errors=True)
        return None if timed_out else code

    def _config_map_volumes(self, namespace: str, spec: dict[str, Any], home: Path) -> None:
        """Write each configMap volume's keys as files into its folder, as the kubelet does
        (``items`` place keys at paths); the containers see the folder at the mount path."""
        for volume in spec.get("volumes") or []:
            source = volume.get("configMap")
            if not source:
                continue
            data = self.core.read_namespaced_config_map(source["name"], namespace).data or {}
            folder = home / "volumes" / volume["name"]
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                target = folder / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])

    def _run_container(
        self,
        namespace: str,
        pod: dict[str, Any],
        container: dict[str, Any],
        home: Path,
        deadline: float,
    ) -> tuple[int, str, str | None]:
        """Run one container, from its image when it was built here, else as a process; its
        exit code, termination message and container ID (None for a process)."""
        own = home / container["name"]
        own.mkdir(parents=True, exist_ok=True)
        termination = own / "termination-log"
        termination.touch()
        name: str | None = None
        if self.podman is not None and not self.instant and self.podman.has(container["image"]):
            name = f"{home.name}-{container['name']}"
            command = self._image_command(name, namespace, pod, container, home, termination)
            env = self.podman.env
        else:
            command, env = self._process_command(namespace, container, home, termination)
            if self.instant:
                return 0, json.dumps(self._instant_summary(env, container["name"])), None
        output = own / "output.log"
        process = self._spawn(command, env, own, output)
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if name is not None and self.podman is not None:
                self.podman.remove(name)  # killing podman's client leaves the container
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = -9
        message = termination.read_text()
        if not message and code != 0:  # terminationMessagePolicy: FallbackToLogsOnError
            message = output.read_text(errors="replace")[-2048:]
        return code, message, None if name is None else f"podman://{name}"

    def _spawn(
        self, command: list[str], env: dict[str, str] | None, cwd: Path, output: Path
    ) -> Child:
        """Start a container's or a revision's process in a session of its own, its output to
        ``output``: forked from the template when it runs ``modeldeploy``, else executed."""
        full = dict(os.environ) if env is None else env
        if self.template is not None and handles(command, self.bin):
            return self.template.spawn(command, full, cwd, output)
        with output.open("wb") as out:
            return subprocess.Popen(
                command, env=full, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip

    def _process_command(
        self, namespace: str, container: dict[str, Any], home: Path, termination: Path
    ) -> tuple[list[str], dict[str, str]]:
        """A container as a local process: its emptyDir volumes are folders of ``home``."""
        mounts = {
            m["mountPath"]: home / "volumes" / m["name"]
            for m in container.get("volumeMounts") or []
            if not m["name"].startswith("pvc-")  # claims: MODELDEPLOY_PVC_ROOT is the host's
        }
        for folder in mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        env = self._env(namespace, container, termination.parent, mounts)
        env["MODELDEPLOY_TERMINATION_LOG"] = str(termination)
        return [*(container.get("command") or []), *(container.get("args") or [])], env

    def _image_command(
        self,
        name: str,
        namespace: str,
        pod: dict[str, Any],
        container: dict[str, Any],
        home: Path,
        termination: Path,
    ) -> list[str]:
        """A container from its image (``tests.support.containers``): claims and emptyDir
        volumes mounted at their paths, the termination message file at the kubelet's."""
        assert self.podman is not None
        termination.chmod(0o666)
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts = [Mount(termination, "/dev/termination-log", read_only=False)]
        for mount in container.get("volumeMounts") or []:
            claim = (volumes[mount["name"]].get("persistentVolumeClaim") or {}).get("claimName")
            host = self.pvc_root / claim if claim else home / "volumes" / mount["name"]
            read_only = bool(mount.get("readOnly"))
            if read_only:
                host.mkdir(parents=True, exist_ok=True)
            else:
                writable_by_all(host)
            mounts.append(Mount(host, mount["mountPath"], read_only))
        env = self._env(namespace, container, termination.parent, declared_only=True)
        return self.podman.command(name, pod, container, env, mounts)

    def _instant_summary(self, env: dict[str, str], container: str) -> dict[str, Any]:
        if "MODELDEPLOY_DEPLOYMENT" not in env:  # a clean-up Job
            return {"released": env.get("MODELDEPLOY_OWNER", "")}
        if container != "publish":  # the staging Job's fetch and stage steps
            return {"status": "Fetched" if container == "fetch" else "Built"}
        doc = json.loads(env["MODELDEPLOY_DEPLOYMENT"])
        name = doc["metadata"]["name"]
        key = f"{name}-{uuid.uuid5(uuid.NAMESPACE_URL, env['MODELDEPLOY_DEPLOYMENT']).hex[:20]}"
        return {
            "status": "Succeeded",
            "uri": f"{env['MODELDEPLOY_ARTIFACT_STORE'].rstrip('/')}/{key}",
            "key": key,
            "digest": "sha256:" + "0" * 64,
            "precision": doc["spec"].get("optimization", {}).get("precision", "fp32"),
            "sizeBytes": 0,
            "cacheHit": False,
            "parity": None,
        }

    # --- InferenceServices ------------------------------------------------------------------

    def on_isvc(self, event_type: str, isvc: dict[str, Any]) -> None:
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            with self.lock:
                service = self.services.pop(key, None)
            if service is not None:
                service.close(self.podman)
            with contextlib.suppress(ApiException):  # no garbage collector here
                self.apps.delete_namespaced_deployment(
                    f"{meta['name']}-predictor", meta["namespace"]
                )
            self._write_targets()
            return
        predictor = isvc["spec"]["predictor"]
        uri = predictor.get("model", {}).get("storageUri")
        if not uri:
            return
        labels = dict(predictor.get("labels") or {})
        start: Revision | None = None
        with self.lock:
            service = self.services.get(key)
            if service is None:
                service = self.services[key] = Service(
                    None if self.instant else WeightedRouter(free_port())
                )
            # Our own status writes come back as events too: only a new generation (a spec
            # change) or a new revision is something to act on.
            changed = service.generation != meta["generation"]
            service.generation = meta["generation"]
            service.canary_percent = _canary_percent(isvc)
            latest = service.revisions[-1] if service.revisions else None
            if latest is None or (latest.storage_uri, latest.labels) != (uri, labels):
                service.counter += 1
                start = Revision(
                    f"{meta['name']}-predictor-{service.counter:05d}",
                    uri,
                    labels,
                    meta["generation"],
                    str(predictor.get("model", {}).get("runtime") or ""),
                )
                service.revisions.append(start)
        if start is not None:
            # The status follows once the revision is ready or has failed (``_serve``), in one
            # write, as the operator's readiness reads need nothing before that.
            self.pool.submit(self._serve_logged, isvc, start)
        elif changed:  # only the traffic changed (canaryTrafficPercent)
            self._publish(isvc)

    def _serve_logged(self, isvc: dict[str, Any], revision: Revision) -> None:
        try:
            self._serve(isvc, revision)
        except Exception:
            log.exception("isvc %s", isvc["metadata"]["name"])

    def _patch_isvc_status(self, isvc: dict[str, Any], status: dict[str, Any]) -> None:
        meta = isvc["metadata"]
        with contextlib.suppress(ApiException):  # deleted meanwhile
            self.custom.patch_namespaced_custom_object_status(
                *KSERVE[:2], meta["namespace"], KSERVE[2], meta["name"], {"status": status}
            )

    def _serve(self, isvc: dict[str, Any], revision: Revision) -> None:
        """Start one revision's runtime and wait until it is ready (or has failed)."""
        meta = isvc["metadata"]
        if not self.instant:
            path = self._local_path(revision.storage_uri)
            if path is None or not path.exists():
                revision.failure = f"the local executor cannot reach {revision.storage_uri}"
                self._publish(isvc)
                return
            revision.http_port, revision.grpc_port = free_port(), free_port()
            revision.metrics_port = revision.http_port
            logfile = self.workdir / f"{meta['namespace']}-{revision.name}.log"
            command, env = [str(self.bin / "modeldeploy"), "serve", str(path),
                            "--http-port", str(revision.http_port),
                            "--grpc-port", str(revision.grpc_port)], None  # fmt: skip
            model = isvc["spec"]["predictor"].get("model") or {}
            predictor_env = {e["name"]: str(e.get("value", "")) for e in model.get("env") or []}
            shadow = self._shadow_folder(isvc)
            if shadow is not None:  # a process has no mount namespace: the path is passed instead
                command += ["--shadow-config", str(shadow / mirror.FILE)]
            env = predictor_env or None
            if revision.runtime == TRITON_RUNTIME:
                try:
                    command, env = self._triton(path, meta["namespace"], revision)
                except (RuntimeError, OSError, triton.UnavailableError) as err:
                    # As a pod that cannot start: the revision fails and the status says why,
                    # rather than staying "starting" for ever.
                    revision.failure = f"revision {revision.name} cannot start Triton: {err}"
                    self._publish(isvc)
                    return
            elif (image := self._runtime_image(revision.runtime)) is not None:
                command, env = self._predictor_container(
                    image, path, meta["namespace"], revision, predictor_env, shadow
                )
            revision.process = self._spawn(
                command, None if env is None else {**os.environ, **env}, Path.cwd(), logfile
            )
            ready_path = f"http://127.0.0.1:{revision.http_port}{_readiness_path(isvc)}"
            deadline = time.monotonic() + 120
            while not _ok(ready_path):
                if revision.process.poll() is not None or time.monotonic() > deadline:
                    stop_revision(revision, self.podman)
                    revision.failure = (
                        f"revision {revision.name} did not become ready: "
                        + logfile.read_text(errors="replace")[-1500:]
                    )
                    log.info("isvc %s/%s: %s", meta["namespace"], meta["name"], revision.failure)
                    self._publish(isvc)
                    return
                time.sleep(0.2)
        revision.ready = True
        log.info("isvc %s/%s revision %s ready (%s)", meta["namespace"], meta["name"],
                 revision.name, revision.storage_uri)  # fmt: skip
        self._publish(isvc)

    def _runtime_image(self, runtime: str) -> dict[str, Any] | None:
        """The ServingRuntime's container, when its image was built here and podman runs it."""
        if self.podman is None or not runtime:
            return None
        try:
            found = self.custom.get_cluster_custom_object(
                "serving.kserve.io", "v1alpha1", "clusterservingruntimes", runtime
            )
        except ApiException:
            return None
        containers = (found.get("spec") or {}).get("containers") or []
        if not containers or not self.podman.has(containers[0]["image"]):
            return None
        return dict(containers[0])

    def _predictor_container(
        self,
        container: dict[str, Any],
        artifact: Path,
        namespace: str,
        revision: Revision,
        predictor_env: dict[str, str],
        shadow: Path | None,
    ) -> tuple[list[str], dict[str, str]]:
        """The predictor pod's container from the runtime's image, as KServe defines it: the
        artifact at /mnt/models (read-only, as the storage initializer leaves it), the
        runtime's own volumes, its ports 8080 and 8081 published on the revision's ports."""
        assert self.podman is not None
        name = f"{namespace}-{revision.name}-{uuid.uuid4().hex[:5]}"
        volumes = self.workdir / f"{name}-volumes"
        mounts = [Mount(artifact, "/mnt/models", read_only=True)]
        for mount in container.get("volumeMounts") or []:
            host = volumes / mount["name"]
            writable_by_all(host)
            mounts.append(Mount(host, mount["mountPath"], bool(mount.get("readOnly"))))
        if shadow is not None:
            mounts.append(Mount(shadow, mirror.MOUNT_PATH, read_only=True))
        env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
        env.update(predictor_env)  # KServe merges the predictor's model container into it
        publish = {revision.http_port: 8080, revision.grpc_port: 8081}
        revision.container = name
        return self.podman.command(name, {}, container, env, mounts, publish), self.podman.env

    def _triton(
        self, artifact: Path, namespace: str, revision: Revision
    ) -> tuple[list[str], dict[str, str]]:
        """KServe's Triton runtime on this artifact (``tests.support.triton``): real
        ``tritonserver``, the staged graph under its Python backend, metrics on a port of their
        own as the runtime's ``prometheus.kserve.io/port`` says."""
        model_dirs = [p.parent for p in artifact.glob("*/config.pbtxt")]
        if len(model_dirs) != 1:
            raise RuntimeError(f"{artifact}: expected one model folder, found {model_dirs}")
        workdir = self.workdir / f"{namespace}-{revision.name}-triton"
        ports = triton.Ports(revision.http_port, revision.grpc_port, free_port())
        revision.metrics_port = ports.metrics
        repository = triton.model_repository(model_dirs[0], workdir)
        return triton.command(repository, workdir, ports)

    def _publish(self, isvc: dict[str, Any]) -> None:
        """Route the traffic as KServe would for the spec as last seen, write the status that
        says so, and stop the revisions that no longer get any."""
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["name"])
        knative = (meta.get("annotations") or {}).get(MODE_ANNOTATION) == "Knative"
        with self.lock:
            service = self.services.get(key)
            if service is None:
                return
            traffic = service.route(knative)
            retired = service.retire({r.name for r, _, _ in traffic})
            status = service.status(traffic)
        for revision in retired:
            stop_revision(revision, self.podman)
        if not knative and not self.instant:
            self._predictor_deployment(isvc, service)
        self._patch_isvc_status(isvc, status)
        self._write_targets()

    def _predictor_deployment(self, isvc: dict[str, Any], service: Service) -> None:
        """Standard mode: the ``<name>-predictor`` Deployment KServe keeps, with the predictor's
        labels on its pod template, and the status a finished or running rolling update has."""
        meta = isvc["metadata"]
        name = f"{meta['name']}-predictor"
        latest = service.revisions[-1]
        selector = {"app": f"isvc.{name}"}
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": meta["namespace"],
                         "ownerReferences": [{"apiVersion": "serving.kserve.io/v1beta1",
                                              "kind": "InferenceService", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": {**latest.labels, **selector}},
                                  "spec": {"containers": [{"name": "kserve-container",
                                                           "image": "modeldeploy-onnx"}]}}},
        }  # fmt: skip
        try:
            applied = self.apps.patch_namespaced_deployment(
                name, meta["namespace"], deployment, field_manager="local-executor", force=True,
                _content_type="application/apply-patch+yaml",
            )  # fmt: skip
            updated = 1 if latest.ready else 0
            available = 1 if any(r.ready for r in service.revisions) else 0
            self.apps.patch_namespaced_deployment_status(name, meta["namespace"], {"status": {
                "observedGeneration": applied.metadata.generation, "replicas": 1,
                "updatedReplicas": updated, "readyReplicas": available,
                "availableReplicas": available}})  # fmt: skip
        except ApiException as err:
            log.warning("deployment %s/%s: %s", meta["namespace"], name, err.reason)

    def _write_targets(self) -> None:
        """Every ready revision as a Prometheus file_sd target, labelled as the relabelling of
        docs/canary.md labels pods in a cluster."""
        if self.instant:
            return
        with self.lock:
            targets = [
                {
                    "targets": [f"127.0.0.1:{revision.metrics_port}"],
                    "labels": {
                        "namespace": namespace,
                        "inferenceservice": name,
                        "revision": revision.name,
                        "modeldeploy_deployment": revision.labels.get(DEPLOYMENT_LABEL, name),
                        "modeldeploy_revision": revision.labels.get(REVISION_LABEL, ""),
                    },
                }
                for (namespace, name), service in self.services.items()
                for revision in service.revisions
                if revision.ready and revision.process is not None
            ]
            temporary = self.targets_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(targets, indent=1))
            os.replace(temporary, self.targets_file)

    # --- ConfigMap volumes of predictor pods ----------------------------------------------------

    def config_map_folder(self, namespace: str, name: str) -> Path:
        """Where a ConfigMap's keys are files, as the kubelet keeps a configMap volume."""
        return self.workdir / "configmaps" / namespace / name

    def on_config_map(self, event_type: str, config_map: dict[str, Any]) -> None:
        """Keep the files of a ConfigMap that predictor pods mount up to date, each one replaced
        whole (the kubelet swaps a symlink; a reader never sees half a file)."""
        meta = config_map["metadata"]
        folder = self.config_map_folder(meta["namespace"], meta["name"])
        folder.mkdir(parents=True, exist_ok=True)
        data = {} if event_type == "DELETED" else dict(config_map.get("data") or {})
        for stale in folder.iterdir():
            if stale.name not in data:
                stale.unlink(missing_ok=True)
        for key, value in data.items():
            temporary = folder / f".{key}.tmp"
            temporary.write_text(value)
            os.replace(temporary, folder / key)

    def _shadow_folder(self, isvc: dict[str, Any]) -> Path | None:
        """The folder of the configMap volume mounted at the shadow's path, when the predictor
        mounts one."""
        predictor = isvc["spec"]["predictor"]
        mounts = (predictor.get("model") or {}).get("volumeMounts") or []
        mounted = {m["name"] for m in mounts if m.get("mountPath") == mirror.MOUNT_PATH}
        for volume in predictor.get("volumes") or []:
            source = volume.get("configMap")
            if volume.get("name") in mounted and source:
                folder = self.config_map_folder(isvc["metadata"]["namespace"], source["name"])
                folder.mkdir(parents=True, exist_ok=True)
                return folder
        return None

    # --- garbage collection -------------------------------------------------------------------

    def on_modeldeployment_deleted(self, md: dict[str, Any]) -> None:
        uid, namespace = md["metadata"]["uid"], md["metadata"]["namespace"]
        for job in self.batch.list_namespaced_job(namespace, label_selector=MANAGED).items:
            if any(o.uid == uid for o in job.metadata.owner_references or []):
                with contextlib.suppress(ApiException):
                    self.batch.delete_namespaced_job(job.metadata.name, namespace)
        found = self.custom.list_namespaced_custom_object(
            *KSERVE[:2], namespace, KSERVE[2], label_selector=MANAGED
        )
        for isvc in found["items"]:
            if any(o["uid"] == uid for o in isvc["metadata"].get("ownerReferences") or []):
                with contextlib.suppress(ApiException):
                    self.custom.delete_namespaced_custom_object(
                        *KSERVE[:2], namespace, KSERVE[2], isvc["metadata"]["name"]
                    )

    # --- watching ----------------------------------------------------------------------------

    def _watch(self, list_fn: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(list_fn, *args, timeout_seconds=60, **kwargs):
                    if self.stopping.is_set():
                        return
                    obj = event["object"]
                    if not isinstance(obj, dict):
                        obj = self.api.sanitize_for_serialization(obj)
                    try:
                        handle(event["type"], obj)
                    except Exception:  # one odd object must not stop the others
                        log.exception("%s %s", event["type"], obj.get("metadata", {}).get("name"))
            except Exception as err:  # reconnect, as a controller's informer would
                if not self.stopping.is_set():
                    log.warning("watch restarted: %s", err)
                    time.sleep(0.5)

    def _job_event(self, kind: str, job: dict[str, Any]) -> None:
        if kind != "DELETED":
            self.on_job(job)

    def _modeldeployment_event(self, kind: str, md: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.on_modeldeployment_deleted(md)

    def run(self) -> None:
        watchers = [
            (self.batch.list_job_for_all_namespaces, self._job_event, (), {"label_selector": MANAGED}),
            (self.custom.list_cluster_custom_object, self.on_isvc, KSERVE, {"label_selector": MANAGED}),
            (self.custom.list_cluster_custom_object, self._modeldeployment_event, MD, {}),
            (self.core.list_pod_for_all_namespaces, self.hook_pods.on_pod, (),
             {"label_selector": HOOK_PODS}),
            (self.core.list_config_map_for_all_namespaces, self.on_config_map, (),
             {"label_selector": f"{MANAGED},modeldeploy.io/role=shadow"}),
        ]  # fmt: skip
        threads = [
            threading.Thread(target=self._watch, args=(fn, handle, *args), kwargs=kw, daemon=True)
            for fn, handle, args, kw in watchers
        ]
        for thread in threads:
            thread.start()
        self.stopping.wait()

    def stop(self) -> None:
        self.stopping.set()
        if self.podman is not None:  # all at once: one by one, SIGTERM takes seconds each
            self.podman.remove_mine()
        with self.lock:
            services = list(self.services.values())
        for service in services:
            service.close(self.podman)
        if self.template is not None:
            self.template.stop()


def stop_revision(revision: Revision, podman: Podman | None) -> None:
    """Stop a revision's process, and its container if it runs in one (podman's client passes
    SIGTERM on; a client killed before the container stopped leaves it behind)."""
    if revision.process is not None:
        stop_group(revision.process)
        revision.process = None
    if revision.container is not None and podman is not None:
        podman.remove(revision.container)


def _waiting(container: dict[str, Any]) -> dict[str, Any]:
    """The status of a container that never started, its pod having failed before it."""
    return {"name": container["name"], "image": container["image"], "imageID": "",
            "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "PodInitializing"}}}  # fmt: skip


def _canary_percent(isvc: dict[str, Any]) -> int | None:
    value = isvc["spec"]["predictor"].get("canaryTrafficPercent")
    return None if value is None else int(value)


def _readiness_path(isvc: dict[str, Any]) -> str:
    """The predictor's readiness probe path (the model name is the ModelDeployment's, also for
    a Standard-mode canary named differently), or KServe's default."""
    model = isvc["spec"]["predictor"].get("model") or {}
    path = ((model.get("readinessProbe") or {}).get("httpGet") or {}).get("path")
    return str(path or f"/v2/models/{isvc['metadata']['name']}/ready")


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.executor")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--pvc-root", type=Path, required=True, help="folder of pvc://<claim>/")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--instant", action="store_true", help="answer without running anything")
    parser.add_argument(
        "--no-containers",
        action="store_true",
        help="run every container as a local process, even where `make images` built its image",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s executor %(message)s")
    args.workdir.mkdir(parents=True, exist_ok=True)
    executor = LocalExecutor(
        args.kubeconfig,
        args.pvc_root,
        args.workdir,
        instant=args.instant,
        containers=not args.no_containers
        and os.environ.get("MODELDEPLOY_EXECUTOR_CONTAINERS") != "0",
        # MODELDEPLOY_EXECUTOR_PREFORK=0 executes every process cold, to compare.
        prefork=os.environ.get("MODELDEPLOY_EXECUTOR_PREFORK") != "0",
    )
    signal.signal(signal.SIGTERM, lambda *_: executor.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: executor.stopping.set())
    try:
        executor.run()
    finally:
        executor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
