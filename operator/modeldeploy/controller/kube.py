"""The operator's Kubernetes I/O: the few reads and writes the handlers make, off the event loop.

The ``kubernetes`` client is synchronous; each call runs in a bounded thread pool so that a
thousand ModelDeployments reconcile concurrently without a thread each. Errors that a retry can
fix (throttling, 5xx, timeouts, lost connections) are raised as :class:`TransientApiError`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from modeldeploy import __version__
from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION
from modeldeploy.controller import naming

KSERVE = "serving.kserve.io"
GATEWAY = "gateway.networking.k8s.io"


class TransientApiError(Exception):
    """A Kubernetes API failure worth retrying with backoff."""


class ConflictError(TransientApiError):
    """A write made on a resourceVersion the object has moved past (409): the writer's view
    was stale, and a look from a fresh read will do better."""


METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
"""Ask the API server for an object's metadata alone."""


USER_AGENT = "modeldeploy-operator"
"""The operator's own API client (kopf's watches and patches say ``kopf/<version>``)."""


def load_client(kubeconfig: str | None = None, pool: int = 8) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            raise config.ConfigException("explicit kubeconfig")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    api = client.ApiClient(configuration)
    # Named in the API server's audit log and request logs: whose writes are whose.
    api.user_agent = f"{USER_AGENT}/{__version__}"
    return api


def _retryable(err: Exception) -> bool:
    if isinstance(err, ApiException):
        return err.status in (0, 408, 429) or err.status >= 500
    return isinstance(err, HTTPError | OSError | TimeoutError)


class Kube:
    """Typed, awaitable access to what the operator reads and writes."""

    def __init__(self, api: client.ApiClient, workers: int = 8) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` in the pool and return the answer's JSON, undecoded into client models:
        building the client's typed objects and turning them back into dicts cost more CPU and
        memory than the rest of a reconciliation."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, _preload_content=False, **kwargs)
        try:
            response = await loop.run_in_executor(self._pool, call)
            data = response.data
        except Exception as err:
            if _retryable(err):
                raise TransientApiError(f"{getattr(fn, '__name__', fn)}: {err}") from err
            raise
        return orjson.loads(data) if data else None

    async def _maybe(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._run(fn, *args, **kwargs)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._maybe(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
        )
        return found

    async def modeldeployment_names(self, namespaces: list[str] | None) -> list[tuple[str, str]]:
        """(namespace, name) of every ModelDeployment watched (metadata only would do; the
        custom-objects API has no such call, and this runs once a resync period)."""
        if namespaces:
            lists = [
                await self._run(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL
                )
                for ns in namespaces
            ]
        else:
            lists = [
                await self._run(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            ]
        return [
            (item["metadata"]["namespace"], item["metadata"]["name"])
            for found in lists
            for item in found["items"]
        ]

    async def secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret's metadata only (a ``PartialObjectMetadata``): its data never reaches
        the operator. RBAC can restrict ``get`` to the one resourceName."""
        found: dict[str, Any] | None = await self._maybe(
            self.core.read_namespaced_secret, name, namespace, _headers={"Accept": METADATA_ONLY}
        )
        return found

    async def secret_exists(self, namespace: str, name: str) -> bool:
        return await self.secret_metadata(namespace, name) is not None

    async def jobs(self, namespace: str, deployment: str, role: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in naming.labels(deployment, role).items())
        found = await self._run(self.batch.list_namespaced_job, namespace, label_selector=selector)
        return list(found["items"])

    async def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._maybe(
            self.batch.read_namespaced_job, name, namespace
        )
        return found

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        found = await self._run(
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job}",
        )
        return list(found["items"])

    async def create_network_policy(self, policy: dict[str, Any]) -> bool:
        """Create ``policy``; False when one of that name exists. Never forced over: an
        existing one is left alone (a name conflict is the plan's to report)."""
        try:
            await self._run(
                self.networking.create_namespaced_network_policy,
                policy["metadata"]["namespace"],
                policy,
            )
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def create_job(self, job: dict[str, Any]) -> bool:
        """Create ``job``; False when it already exists (a restarted or racing reconcile)."""
        try:
            await self._run(self.batch.create_namespaced_job, job["metadata"]["namespace"], job)
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._maybe(
            self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
        )

    async def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._maybe(
            self.custom.get_namespaced_custom_object,
            KSERVE, "v1beta1", namespace, "inferenceservices", name,
        )  # fmt: skip
        return found

    async def delete_inference_service(self, namespace: str, name: str) -> None:
        await self._maybe(
            self.custom.delete_namespaced_custom_object,
            KSERVE, "v1beta1", namespace, "inferenceservices", name,
        )  # fmt: skip

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._maybe(
            self.apps.read_namespaced_deployment, name, namespace
        )
        return found

    async def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self._maybe(
            self.custom.get_namespaced_custom_object,
            GATEWAY, "v1", namespace, "httproutes", name,
        )  # fmt: skip
        return found

    async def config_map_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap's metadata (who owns it), never its data."""
        found: dict[str, Any] | None = await self._maybe(
            self.core.read_namespaced_config_map, name, namespace,
            _headers={"Accept": METADATA_ONLY},
        )  # fmt: skip
        return found

    async def post_event(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": body.get("kind", "ModelDeployment"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": naming.FIELD_MANAGER},
            "reportingComponent": naming.FIELD_MANAGER,
            "reportingInstance": naming.FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._run(self.core.create_namespaced_event, meta["namespace"], event)

    async def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace the finalizers, if the object is still at ``resource_version`` (else
        :class:`ConflictError`); the object after the change."""
        return await self._patch_md(
            namespace, name,
            {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
        )  # fmt: skip

    async def remove_annotations(
        self, namespace: str, name: str, keys: list[str]
    ) -> dict[str, Any]:
        """Drop one-shot command annotations (promote, abort) once acted on; the object after."""
        return await self._patch_md(
            namespace, name, {"metadata": {"annotations": dict.fromkeys(keys)}}
        )

    async def _patch_md(
        self, namespace: str, name: str, patch: dict[str, Any], subresource: str = ""
    ) -> dict[str, Any]:
        call = (
            self.custom.patch_namespaced_custom_object_status
            if subresource == "status"
            else self.custom.patch_namespaced_custom_object
        )
        try:
            patched: dict[str, Any] = await self._run(
                call, GROUP, VERSION, namespace, PLURAL, name, patch,
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as err:
            if err.status == 409:
                raise ConflictError(f"{namespace}/{name}: {err.reason}") from err
            raise
        return patched

    async def apply(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator's field manager (forced: these fields are
        ours by definition; fields other managers set are untouched)."""
        group, version = obj["apiVersion"].split("/")
        meta = obj["metadata"]
        result: dict[str, Any] = await self._run(
            self.custom.patch_namespaced_custom_object,
            group, version, meta["namespace"], plural, meta["name"], obj,
            field_manager=naming.FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip
        return result

    async def apply_config_map(self, obj: dict[str, Any]) -> None:
        """Server-side apply a ConfigMap (the shadow's), as :meth:`apply` does."""
        meta = obj["metadata"]
        await self._run(
            self.core.patch_namespaced_config_map,
            meta["name"], meta["namespace"], obj,
            field_manager=naming.FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge ``status`` in, if the object is still at ``resource_version`` (the one the
        patch was computed from; else :class:`ConflictError`); the object after the change."""
        return await self._patch_md(
            namespace, name, {"metadata": {"resourceVersion": resource_version}, "status": status},
            subresource="status",
        )  # fmt: skip

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()
