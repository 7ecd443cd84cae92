"""The operator's Kubernetes I/O: the few reads and writes a reconciliation makes, each a plain
REST call on the event loop (``api_transport``), with the credentials the ``kubernetes`` client
loads. Errors that a retry can fix (throttling, 5xx, timeouts, lost connections) are raised as
:class:`TransientApiError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from modeldeploy import __version__
from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION
from modeldeploy.controller import naming
from modeldeploy.controller.api_transport import ApiTransport

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
"""The operator's API client, its watches included."""


def load_client(kubeconfig: str | None = None, pool: int = 8) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            raise config.ConfigException("explicit kubeconfig")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = pool  # also the operator's own connections
    api = client.ApiClient(configuration)
    # Named in the API server's audit log and request logs: whose writes are whose.
    api.user_agent = f"{USER_AGENT}/{__version__}"
    return api


def _retryable(err: Exception) -> bool:
    if isinstance(err, ApiException):
        return err.status in (0, 408, 429) or err.status >= 500
    return isinstance(err, aiohttp.ClientError | OSError | TimeoutError)


def _path(group: str, version: str, namespace: str | None, plural: str, *rest: str) -> str:
    """A resource's REST path: ``/api/v1`` for the core group, ``/apis/<group>/<version>``
    for the others, then the namespace, the plural and what follows (name, subresource)."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    scope = f"/namespaces/{namespace}" if namespace is not None else ""
    return "/".join([f"{base}{scope}/{plural}", *rest])


class Kube:
    """Typed, awaitable access to what the operator reads and writes."""

    def __init__(self, api: client.ApiClient) -> None:
        """Requests with ``api``'s configuration and user agent; ``api`` itself stays its
        owner's (start-up checks and leader election use it), and is not closed here."""
        self._transport = ApiTransport(
            api.configuration, api.user_agent, limit=api.configuration.connection_pool_maxsize
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; a failure a retry can fix becomes :class:`TransientApiError`."""
        try:
            return await self._transport.request(method, path, **kwargs)
        except Exception as err:
            if _retryable(err):
                raise TransientApiError(f"{method} {path}: {err}") from err
            raise

    async def _get(self, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """The object, or None when there is none (404)."""
        try:
            found: dict[str, Any] = await self._call("GET", path, **kwargs)
            return found
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def _create(self, path: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """POST ``obj``; the object created, or None when one of that name exists (409): never
        forced over."""
        try:
            created: dict[str, Any] = await self._call("POST", path, body=obj)
        except ApiException as err:
            if err.status == 409:
                return None
            raise
        return created

    async def modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_path(GROUP, VERSION, namespace, PLURAL, name))

    async def pages(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        selector: str | None = None,
        page: int = 100,
    ) -> AsyncIterator[dict[str, Any]]:
        """One listing of ``plural`` in ``namespace`` (None: all), a page at a time, as the API
        server answers it: ``items``, and ``metadata.resourceVersion`` (the snapshot's, where a
        watch goes on from) on every page."""
        token = ""
        while True:
            query = {"limit": str(page), **({"continue": token} if token else {})}
            if selector:
                query["labelSelector"] = selector
            found: dict[str, Any] = await self._call(
                "GET", _path(group, version, namespace, plural), query=query
            )
            yield found
            token = (found.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def watch(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        resource_version: str,
        selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[bytes]:
        """The changes to ``plural`` in ``namespace`` (None: all) after ``resource_version``, one
        JSON line each, until the API server ends the watch (after ``timeout_seconds``);
        bookmarks included, so a quiet resource still moves its resourceVersion on."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if selector:
            query["labelSelector"] = selector
        return self._transport.lines(
            _path(group, version, namespace, plural),
            query=query,
            # The server closes the stream itself after timeout_seconds; a stream silent well
            # beyond that is a dead connection.
            read_timeout=timeout_seconds + 30,
        )

    async def secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret's metadata only (a ``PartialObjectMetadata``): its data never reaches
        the operator. RBAC can restrict ``get`` to the one resourceName."""
        return await self._get(_path("", "v1", namespace, "secrets", name), accept=METADATA_ONLY)

    async def secret_exists(self, namespace: str, name: str) -> bool:
        return await self.secret_metadata(namespace, name) is not None

    async def jobs(self, namespace: str, deployment: str, role: str) -> list[dict[str, Any]]:
        selector = naming.selector(naming.labels(deployment, role))
        found = await self._call(
            "GET", _path("batch", "v1", namespace, "jobs"), query={"labelSelector": selector}
        )
        return list(found["items"])

    async def job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_path("batch", "v1", namespace, "jobs", name))

    async def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        found = await self._call(
            "GET", _path("", "v1", namespace, "pods"),
            query={"labelSelector": f"batch.kubernetes.io/job-name={job}"},
        )  # fmt: skip
        return list(found["items"])

    async def create_network_policy(self, policy: dict[str, Any]) -> bool:
        """Create ``policy``; False when one of that name exists. Never forced over: an
        existing one is left alone (a name conflict is the plan's to report)."""
        namespace = policy["metadata"]["namespace"]
        path = _path("networking.k8s.io", "v1", namespace, "networkpolicies")
        return await self._create(path, policy) is not None

    async def create_job(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``job``; the Job created, or None when it already exists (a restarted or
        racing reconcile)."""
        return await self._create(_path("batch", "v1", job["metadata"]["namespace"], "jobs"), job)

    async def delete_job(self, namespace: str, name: str) -> None:
        await self._delete(_path("batch", "v1", namespace, "jobs", name),
                           {"propagationPolicy": "Background"})  # fmt: skip

    async def _delete(self, path: str, options: dict[str, Any] | None = None) -> None:
        """Delete; one already gone is not an error."""
        try:
            await self._call("DELETE", path, body=options)
        except ApiException as err:
            if err.status != 404:
                raise

    async def inference_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_path(KSERVE, "v1beta1", namespace, "inferenceservices", name))

    async def delete_inference_service(self, namespace: str, name: str) -> None:
        await self._delete(_path(KSERVE, "v1beta1", namespace, "inferenceservices", name))

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_path("apps", "v1", namespace, "deployments", name))

    async def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._get(_path(GATEWAY, "v1", namespace, "httproutes", name))

    async def config_map_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap's metadata (who owns it), never its data."""
        return await self._get(_path("", "v1", namespace, "configmaps", name), accept=METADATA_ONLY)

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
        await self._call("POST", _path("", "v1", meta["namespace"], "events"), body=event)

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
        path = _path(
            GROUP, VERSION, namespace, PLURAL, name, *([subresource] if subresource else [])
        )
        try:
            patched: dict[str, Any] = await self._call(
                "PATCH", path, body=patch, content_type="application/merge-patch+json"
            )
        except ApiException as err:
            if err.status == 409:
                raise ConflictError(f"{namespace}/{name}: {err.reason}") from err
            raise
        return patched

    async def apply(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        """Server-side apply ``obj`` as the operator's field manager (forced: these fields are
        ours by definition; fields other managers set are untouched). JSON is YAML: the
        apply-patch content type takes the object as it is."""
        group, _, version = obj["apiVersion"].rpartition("/")  # "v1": the core group
        meta = obj["metadata"]
        applied: dict[str, Any] = await self._call(
            "PATCH", _path(group, version, meta["namespace"], plural, meta["name"]),
            body=obj, content_type="application/apply-patch+yaml",
            query={"fieldManager": naming.FIELD_MANAGER, "force": "true"},
        )  # fmt: skip
        return applied

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Merge ``status`` in, if the object is still at ``resource_version`` (the one the
        patch was computed from; else :class:`ConflictError`); the object after the change."""
        return await self._patch_md(
            namespace, name, {"metadata": {"resourceVersion": resource_version}, "status": status},
            subresource="status",
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the connections (at the operator's stop, on its own loop)."""
        await self._transport.aclose()
