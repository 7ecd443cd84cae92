"""One pod's life on the node, as the kubelet's pod worker runs it: sandbox, volumes, init
containers in order, then the containers with their probes and restarts, the pod's status
written back after every change, and on deletion the containers stopped within the grace period
and the deletion confirmed.

Status follows the kubelet's ``generateAPIPodStatus``: phase from the containers' states and the
restart policy; conditions ``PodReadyToStartContainers``, ``Initialized``, ``ContainersReady``
and ``Ready``; ``podIP``/``podIPs`` and ``hostIP``; each container's state, last state, restart
count, ``started`` and ``ready``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kubelet import dns, environment, images, probes
from tests.support.kubelet.containers import ContainerRun, rfc3339, runs_as_root_refused, user_of
from tests.support.kubelet.network import PodNetwork, Sandbox
from tests.support.kubelet.volumes import Mount, VolumeError, Volumes

log = logging.getLogger("node-agent")
TICK = 0.25
"""How often a pod worker looks at its processes and probes (the kubelet's PLEG relists every
second; probes keep their own periods)."""


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


def restarts(policy: str, exit_code: int) -> bool:
    """Whether the kubelet restarts a container that exited with ``exit_code``."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _condition(
    kind: str, ok: bool, since: dict[str, tuple[str, str]], reason: str = ""
) -> dict[str, Any]:
    """A pod condition; its transition time moves only when its status does."""
    status = "True" if ok else "False"
    if since.get(kind, ("", ""))[0] != status:
        since[kind] = (status, rfc3339())
    found = {"type": kind, "status": status, "lastProbeTime": None,
             "lastTransitionTime": since[kind][1]}  # fmt: skip
    if reason and not ok:
        found["reason"] = reason
    return found


def confirm_deletion(core: client.CoreV1Api, namespace: str, name: str, uid: str) -> None:
    """Once its containers have stopped, the kubelet deletes the pod with no grace period: the
    API server then removes it (for this pod, not a new one of the same name)."""
    try:
        core.delete_namespaced_pod(
            name, namespace,
            body=client.V1DeleteOptions(grace_period_seconds=0,
                                        preconditions=client.V1Preconditions(uid=uid)),
        )  # fmt: skip
    except ApiException as err:
        if err.status not in (404, 409):
            raise


class PodWorker:
    def __init__(self, core: client.CoreV1Api, network: PodNetwork, pod: dict[str, Any],
                 home: Path, host_ip: str,
                 prepare: Callable[[Sandbox], None] = lambda _: None,
                 image_sources: Path = Path("/nonexistent")) -> None:  # fmt: skip
        self.core, self.network, self.pod, self.home, self.host_ip = (
            core,
            network,
            pod,
            home,
            host_ip,
        )
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.policy = pod["spec"].get("restartPolicy") or "Always"
        self.init = [ContainerRun(c, home) for c in pod["spec"].get("initContainers") or []]
        self.containers = [ContainerRun(c, home) for c in pod["spec"]["containers"]]
        self.sandbox: Sandbox | None = None
        self.prepare = prepare
        self.image_sources = image_sources
        """Where the image table's ``files`` are read from (``images.Image.files``)."""
        """Called with the new sandbox before any container starts (the Service rules)."""
        self.phase = Phase.PENDING
        self.initialized = not self.init
        self.deleting: float | None = None
        self.stopped = threading.Event()
        self._since: dict[str, tuple[str, str]] = {}
        self._written: dict[str, Any] | None = None
        self._start_time = rfc3339()
        self._thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def delete(self, grace: float) -> None:
        """The pod was deleted with ``grace`` seconds: stop it, then confirm."""
        if self.deleting is None:
            self.deleting = grace

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def container(self, name: str) -> ContainerRun:
        return next(c for c in [*self.init, *self.containers] if c.name == name)

    # --- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._live()
        except Exception:
            log.exception("pod %s/%s", self.namespace, self.name)
        finally:
            for run in [*self.init, *self.containers]:
                run.stop(0)
            if self.sandbox is not None:
                self.network.release(self.sandbox)
            self.stopped.set()

    def _live(self) -> None:
        self.sandbox = self.network.sandbox()
        self.prepare(self.sandbox)
        volumes = Volumes(self.core, self.pod, self.home)
        while self.deleting is None:
            try:
                volumes.set_up()
                break
            except (VolumeError, ApiException) as err:
                message = err.reason if isinstance(err, ApiException) else str(err)
                for run in [*self.init, *self.containers]:
                    run.state = {"waiting": {"reason": "ContainerCreating", "message": message}}
                self._write()
                time.sleep(1)
        while self.deleting is None and self.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            self._step(volumes)
            self._write()
            time.sleep(TICK)
        if self.deleting is not None:
            self._terminate(self.deleting)

    def _step(self, volumes: Volumes) -> None:
        now = time.monotonic()
        if not self.initialized:
            self._step_init(volumes, now)
            return
        for run in self.containers:
            self._step_container(run, volumes, now)
        self.phase = self._phase()

    def _step_init(self, volumes: Volumes, now: float) -> None:
        """Init containers one at a time, each to success, before any container starts."""
        for run in self.init:
            if "terminated" in run.state and run.state["terminated"]["exitCode"] == 0:
                continue
            if not run.running:
                if run.process is not None:
                    ended = run.exited(self._fallback(run))
                    run.process = None
                    code = ended["terminated"]["exitCode"]
                    if code == 0:
                        run.state = ended
                        continue
                    if self.policy == "Never":
                        run.state, self.phase = ended, Phase.FAILED
                        return
                    run.last_state, run.restarts = ended, run.restarts + 1
                    run.schedule_restart(time.time())
                    run.state = {"waiting": {"reason": "CrashLoopBackOff",
                                             "message": f"back-off {run.backoff:.0f}s restarting "
                                             f"failed container={run.name} pod={self.name}"}}  # fmt: skip
                if now >= run.retry_at:
                    self._start(run, volumes)
            return
        self.initialized = True

    def _step_container(self, run: ContainerRun, volumes: Volumes, now: float) -> None:
        if run.process is None:
            if now >= run.retry_at and "terminated" not in run.state:
                self._start(run, volumes)
            return
        if run.running:
            self._probe(run, now)
            return
        ended = run.exited(self._fallback(run))
        run.process = None
        code = ended["terminated"]["exitCode"]
        if not restarts(self.policy, code):
            run.state = ended
            return
        run.last_state, run.restarts = ended, run.restarts + 1
        run.schedule_restart(time.time())
        run.state = {"waiting": {"reason": "CrashLoopBackOff", "message": (
            f"back-off {run.backoff:.0f}s restarting failed container={run.name} "
            f"pod={self.name}")}}  # fmt: skip

    def _probe(self, run: ContainerRun, now: float) -> None:
        assert self.sandbox is not None
        assert run.process is not None
        startup = run.probes.get(probes.Kind.STARTUP)
        kinds = [probes.Kind.STARTUP] if startup and startup.result is not True else [
            probes.Kind.LIVENESS, probes.Kind.READINESS]  # fmt: skip
        for kind in kinds:
            state = run.probes.get(kind)
            if state is None or not state.due(now):
                continue
            ok, message = probes.check(state.probe, self.sandbox.ip, run.spec, run.process.pid,
                                       run.user)  # fmt: skip
            state.record(now, ok, message)
            if kind != probes.Kind.READINESS and state.result is False:
                # A failed liveness or startup probe: the kubelet kills the container, and the
                # restart policy decides what follows.
                log.info("pod %s/%s container %s failed its %s probe: %s", self.namespace,
                         self.name, run.name, kind, message)  # fmt: skip
                run.killed_for = kind
                grace = float(self.pod["spec"].get("terminationGracePeriodSeconds") or 30)
                run.stop(grace)
                return

    def _start(self, run: ContainerRun, volumes: Volumes) -> None:
        assert self.sandbox is not None
        try:
            image = images.lookup(run.spec["image"])
        except images.ImageNotFoundError as err:
            run.state = {"waiting": {"reason": "ErrImagePull", "message": str(err)}}
            run.retry_at = time.monotonic() + 5
            return
        uid = user_of(self.pod, run.spec, image)[0]
        if runs_as_root_refused(self.pod, run.spec, uid):
            run.state = {"waiting": {"reason": "CreateContainerConfigError",
                                     "message": "container has runAsNonRoot and image will run "
                                     "as root"}}  # fmt: skip
            run.retry_at = time.monotonic() + 5
            return
        try:
            pod = {**self.pod, "status": self._status()}
            env = environment.build(self.core, pod, run.spec, image)
            mounts = volumes.mounts(run.spec)
        except (VolumeError, ApiException, KeyError, ValueError) as err:
            message = err.reason if isinstance(err, ApiException) else str(err)
            run.state = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
            run.retry_at = time.monotonic() + 2
            return
        argv = [environment.expand(a, env) for a in images.argv(
            image, run.spec.get("command"), run.spec.get("args"))]  # fmt: skip
        files = [Mount(str(self.image_sources / source), target, True)
                 for target, source in image.files]  # fmt: skip
        if self.pod["spec"].get("dnsPolicy", "ClusterFirst") == "ClusterFirst":
            resolv = self.home / "resolv.conf"
            resolv.write_text(dns.resolv_conf(self.host_ip, self.namespace))
            resolv.chmod(0o644)
            files.append(Mount(str(resolv), "/etc/resolv.conf", True))
        run.start(self.sandbox, argv, env, [*mounts, *files], self.pod, image)
        log.info("pod %s/%s container %s started (restart %d): %s", self.namespace, self.name,
                 run.name, run.restarts, argv)  # fmt: skip

    def _fallback(self, run: ContainerRun) -> bool:
        return run.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"

    def _phase(self) -> Phase:
        """Running while any container runs or will restart; once all have ended for good,
        Succeeded if every one exited 0, else Failed."""
        ended = [r.state.get("terminated") for r in self.containers]
        if not all(ended):
            return Phase.RUNNING if any(r.process is not None for r in self.containers) or any(
                r.restarts for r in self.containers) else Phase.PENDING  # fmt: skip
        return Phase.SUCCEEDED if all(t["exitCode"] == 0 for t in ended if t) else Phase.FAILED

    def _terminate(self, grace: float) -> None:
        """Stop every container within the grace period, then confirm the deletion."""
        for run in self.containers:
            if run.running:
                run.stop(grace)
                run.state = run.exited(self._fallback(run))
                run.process = None
        self._write()
        confirm_deletion(self.core, self.namespace, self.name, self.uid)

    # --- status -------------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        ip = self.sandbox.ip if self.sandbox else None
        containers_ready = all(r.ready for r in self.containers)
        ready_reason = "" if containers_ready else "ContainersNotReady"
        if self.phase in (Phase.SUCCEEDED, Phase.FAILED):
            ready_reason = "PodCompleted"
        status: dict[str, Any] = {
            "phase": str(self.phase),
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": self._start_time,
            "conditions": [
                _condition("PodReadyToStartContainers", self.sandbox is not None, self._since),
                _condition(
                    "Initialized", self.initialized, self._since, "ContainersNotInitialized"
                ),
                _condition("ContainersReady", containers_ready, self._since, ready_reason),
                _condition("Ready", containers_ready, self._since, ready_reason),
                _condition("PodScheduled", True, self._since),
            ],
            "containerStatuses": [r.status() for r in self.containers],
            "qosClass": (self.pod.get("status") or {}).get("qosClass"),
        }
        if self.init:
            status["initContainerStatuses"] = [r.status() for r in self.init]
        if ip:
            status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
        return status

    def _write(self) -> None:
        status = self._status()
        if status == self._written:
            return
        try:
            self.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status})
            self._written = status
        except ApiException as err:
            if err.status != 404:
                log.warning("pod %s/%s status: %s", self.namespace, self.name, err.reason)
