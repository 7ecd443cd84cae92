"""The node agent's loop: watch the pods the scheduler bound to this node, and keep one worker
per pod (``pods.py``), as the kubelet's pod workers do.

A pod seen for the first time starts; a pod with a deletion timestamp is stopped within its
grace period and its deletion confirmed; a pod that has already ended is only confirmed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.kubelet.dns import ClusterDNS
from tests.support.kubelet.network import PodNetwork
from tests.support.kubelet.node import NodeShape, register
from tests.support.kubelet.pods import PodWorker, confirm_deletion
from tests.support.kubelet.services import ServiceProxy

log = logging.getLogger("node-agent")


class NodeAgent:
    def __init__(self, api: client.ApiClient, shape: NodeShape, workdir: Path,
                 network: PodNetwork, image_sources: Path) -> None:  # fmt: skip
        """``network``: created already (the API server is told the node's bridge address);
        its owner destroys it. ``image_sources``: where files of images that this checkout
        lacks are read from (the envtest assets' folder of KServe files)."""
        self.image_sources = image_sources
        self.api, self.shape, self.workdir = api, shape, workdir
        self.core = client.CoreV1Api(api)
        self.network = network
        self.proxy = ServiceProxy(api, self.network)
        self.dns = ClusterDNS(api, self.network.gateway)
        self.workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="node-agent", daemon=True)

    def start(self) -> None:
        register(self.api, self.shape, self.network.gateway)
        self.proxy.start()
        self.dns.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.delete(0)
        for worker in workers:
            worker.join(30)
        self.proxy.stop()
        self.dns.stop()

    def worker(self, namespace: str, name: str) -> PodWorker:
        """The worker running that pod now (the newest, when pods of that name came and went)."""
        with self._lock:
            found = [w for w in self.workers.values() if (w.namespace, w.name) == (namespace, name)]
        if not found:
            raise LookupError(f"pod {namespace}/{name} is not running on {self.shape.name}")
        return found[-1]

    def _watch(self) -> None:
        selector = f"spec.nodeName={self.shape.name}"
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = self.core.list_pod_for_all_namespaces(field_selector=selector)
                    for pod in listed.items:
                        self.on_pod("ADDED", self.api.sanitize_for_serialization(pod))
                    version = listed.metadata.resource_version
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=version, timeout_seconds=30,
                )  # fmt: skip
                for event in stream:
                    if self._stop.is_set():
                        return
                    pod = self.api.sanitize_for_serialization(event["object"])
                    version = pod["metadata"]["resourceVersion"]
                    self.on_pod(event["type"], pod)
            except ApiException as err:
                if err.status == 410:  # expired: list again
                    version = ""
                    continue
                log.warning("watching pods: %s", err.reason)
                self._stop.wait(1)
            except Exception:  # the API server restarting, or the test ending
                if self._stop.is_set():  # the cluster going away
                    return
                log.exception("watching pods")
                self._stop.wait(1)

    def on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if worker is None and kind != "DELETED" and not meta.get("deletionTimestamp"):
                phase = (pod.get("status") or {}).get("phase")
                if phase in ("Succeeded", "Failed"):
                    return
                home = self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{uid}"
                worker = PodWorker(self.core, self.network, pod, home, self.network.gateway,
                                   self.proxy.apply_to, self.image_sources)  # fmt: skip
                self.workers[uid] = worker
                worker.start()
                return
        if kind == "DELETED":
            if worker is not None:
                worker.delete(0)
            return
        if meta.get("deletionTimestamp"):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            if worker is not None and not worker.stopped.is_set():
                worker.delete(grace)
            else:
                confirm_deletion(self.core, meta["namespace"], meta["name"], uid)
