"""A Gateway API gateway for the test cluster, a stand-in for Traefik: the controller that
accepts the HTTPRoutes attached to KServe's Gateway and the proxy that routes by them.

Why a stand-in: Traefik (``github.com/traefik/traefik/v3`` v3.7.13) is served by the Go proxy,
but its ``cmd/traefik`` cannot be built here. ``go mod tidy`` is refused 15 of its
dependencies ("403 Forbidden: This module version is not available"): its own fork
``github.com/containous/go-http-auth`` and 14 ACME DNS providers' SDKs, most of which the proxy
serves no version of. Envoy-based gateways need Envoy, which cannot be built here either.

What it does, as a Gateway API implementation does:

- **Control plane.** It owns a GatewayClass (controller ``modeldeploy.io/test-gateway``) and the
  Gateway KServe's ingress config names, and reports them Accepted and Programmed at its
  address. For every HTTPRoute whose parentRefs name that Gateway it writes
  ``status.parents``: Accepted, and ResolvedRefs True or False (``BackendNotFound``, naming the
  missing Service), at the route's generation. KServe reads exactly that to set IngressReady.
- **Data plane.** It listens on ``127.0.0.1:<port>`` and routes each request by the attached
  routes: hostnames (exact, or ``*.`` wildcards), path matches (Exact, PathPrefix and
  RegularExpression, matched whole as Envoy's RE2 does), header matches (Exact),
  RequestHeaderModifier filters, weighted backendRefs (smooth weighted round-robin), and
  ``timeouts.request``. A backend Service's port leads, through its EndpointSlices, to the ready
  pod IPs and port, which it reaches over the node's pod network, as kube-proxy-less gateways
  (Envoy Gateway, Traefik) do.

Precedence between rules follows the spec's order: an exact hostname before a wildcard, Exact
before PathPrefix (longer first) before RegularExpression, more header matches first, then the
older route, then rule order. What it does not do: TLS listeners, redirects, URL rewrites,
mirrors, GRPCRoutes, and cross-namespace ReferenceGrants (KServe needs none of them).
"""

from __future__ import annotations

import http.client
import logging
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.controlplane import free_port
from tests.support.loops import every
from tests.support.router import HOP_BY_HOP, SmoothWeighted, forwarding_handler

log = logging.getLogger("gateway")
GROUP, VERSION = "gateway.networking.k8s.io", "v1"
CONTROLLER = "modeldeploy.io/test-gateway"
CLASS = "modeldeploy-test"


@dataclass(frozen=True)
class Backend:
    namespace: str
    service: str
    port: int


@dataclass(frozen=True)
class Candidate:
    """One rule's match of one route, with its place in the precedence order."""

    rank: tuple[Any, ...]
    route: str
    rule: dict[str, Any]
    namespace: str


def _hostname_rank(patterns: list[str], host: str) -> int | None:
    """2 for an exact hostname, 1 for a wildcard, 0 for a route with none; None: no match."""
    if not patterns:
        return 0
    if host in patterns:
        return 2
    if any(p.startswith("*.") and host.endswith(p[1:]) for p in patterns):
        return 1
    return None


def _path_rank(match: dict[str, Any], path: str) -> tuple[int, int] | None:
    spec = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = spec.get("type", "PathPrefix"), spec.get("value", "/")
    path = path.split("?", 1)[0]
    if kind == "Exact":
        return (3, len(value)) if path == value else None
    if kind == "PathPrefix":
        prefix = value.rstrip("/")
        ok = not prefix or path == prefix or path.startswith(prefix + "/")
        return (2, len(value)) if ok else None
    return (1, 0) if re.fullmatch(value, path) else None


def _headers_match(match: dict[str, Any], headers: dict[str, str]) -> bool:
    for header in match.get("headers") or []:
        if header.get("type", "Exact") != "Exact":
            return False
        if headers.get(header["name"].lower()) != header["value"]:
            return False
    return True


def candidates(routes: list[dict[str, Any]], host: str, path: str,
               headers: dict[str, str]) -> list[Candidate]:  # fmt: skip
    """The rules that match a request, best first (the spec's precedence)."""
    found = []
    for route in routes:
        meta, spec = route["metadata"], route["spec"]
        host_rank = _hostname_rank(spec.get("hostnames") or [], host.split(":", 1)[0])
        if host_rank is None:
            continue
        for index, rule in enumerate(spec.get("rules") or []):
            for match in rule.get("matches") or [{}]:
                path_rank = _path_rank(match, path)
                if path_rank is None or not _headers_match(match, headers):
                    continue
                rank = (-host_rank, -path_rank[0], -path_rank[1],
                        -len(match.get("headers") or []), meta.get("creationTimestamp", ""),
                        meta["namespace"], meta["name"], index)  # fmt: skip
                found.append(Candidate(rank, f"{meta['namespace']}/{meta['name']}", rule,
                                       meta["namespace"]))  # fmt: skip
    return sorted(found, key=lambda c: c.rank)


def parent_status(route: dict[str, Any], gateway: tuple[str, str],
                  missing: list[str]) -> dict[str, Any]:  # fmt: skip
    """The route's status.parents entry for our Gateway."""
    generation = route["metadata"].get("generation", 1)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resolved = {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                "message": "every backendRef resolved"}  # fmt: skip
    if missing:
        resolved = {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                    "message": f"backend Service(s) not found: {', '.join(missing)}"}  # fmt: skip
    accepted = {"type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "accepted by the test gateway"}  # fmt: skip
    return {
        "parentRef": {
            "group": GROUP,
            "kind": "Gateway",
            "namespace": gateway[0],
            "name": gateway[1],
        },
        "controllerName": CONTROLLER,
        "conditions": [
            {**c, "observedGeneration": generation, "lastTransitionTime": now}
            for c in (accepted, resolved)
        ],
    }


def attached(route: dict[str, Any], gateway: tuple[str, str]) -> bool:
    namespace = route["metadata"]["namespace"]
    return any(
        (ref.get("namespace") or namespace, ref["name"]) == gateway
        and ref.get("kind", "Gateway") == "Gateway"
        for ref in route["spec"].get("parentRefs") or []
    )


class Gateway:
    def __init__(self, api: client.ApiClient, gateway: str, port: int | None = None) -> None:
        namespace, name = gateway.split("/")
        self.gateway = (namespace, name)
        self.api = api
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.port = port or free_port()
        self.routes: dict[str, dict[str, Any]] = {}
        self._written: dict[str, Any] = {}
        self._weights: dict[str, SmoothWeighted[Backend]] = {}
        self._next_endpoint: dict[Backend, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, daemon=True, name="gateway-watch"),
            # Backends that appear after their route: ResolvedRefs is looked at again.
            threading.Thread(target=every, args=(2, self._stop, self._report_routes,
                                                 "reporting HTTPRoutes"), daemon=True),
        ]  # fmt: skip
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", self.port), forwarding_handler(self.forward)
        )
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """The GatewayClass and Gateway, then the watch, the resync and the listener."""
        namespace, name = self.gateway
        self.custom.create_cluster_custom_object(GROUP, VERSION, "gatewayclasses", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "GatewayClass",
            "metadata": {"name": CLASS}, "spec": {"controllerName": CONTROLLER}})  # fmt: skip
        try:
            self.core.create_namespace({"metadata": {"name": namespace}})
        except ApiException as err:
            if err.status != 409:
                raise
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "gateways", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Gateway",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"gatewayClassName": CLASS, "listeners": [
                {"name": "http", "protocol": "HTTP", "port": 80,
                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}})  # fmt: skip
        self._report_gateway()
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    # --- control plane ------------------------------------------------------------------------

    def _report_gateway(self) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conditions = [{"type": t, "status": "True", "reason": t, "message": "test gateway",
                       "lastTransitionTime": now, "observedGeneration": 1}
                      for t in ("Accepted", "Programmed")]  # fmt: skip
        self.custom.patch_cluster_custom_object_status(GROUP, VERSION, "gatewayclasses", CLASS,
                                                       {"status": {"conditions": conditions[:1]}})  # fmt: skip
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.gateway[0], "gateways", self.gateway[1],
            {"status": {"addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                        "conditions": conditions}},
        )  # fmt: skip

    def _watch(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = self.custom.list_cluster_custom_object(GROUP, VERSION, "httproutes")
                    with self._lock:
                        self.routes = {self._key(r): r for r in listed["items"]
                                       if attached(r, self.gateway)}  # fmt: skip
                    version = listed["metadata"]["resourceVersion"]
                    self._report_routes()
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object, GROUP, VERSION, "httproutes",
                    resource_version=version, timeout_seconds=30,
                )  # fmt: skip
                for event in stream:
                    route = event["object"]
                    version = route["metadata"]["resourceVersion"]
                    with self._lock:
                        if event["type"] == "DELETED" or not attached(route, self.gateway):
                            self.routes.pop(self._key(route), None)
                        else:
                            self.routes[self._key(route)] = route
                    self._report_routes()
                    if self._stop.is_set():
                        return
            except ApiException as err:
                version = "" if err.status == 410 else version
                self._stop.wait(1)
            except Exception:
                if self._stop.is_set():  # the cluster going away
                    return
                log.exception("watching HTTPRoutes")
                self._stop.wait(1)

    @staticmethod
    def _key(route: dict[str, Any]) -> str:
        return f"{route['metadata']['namespace']}/{route['metadata']['name']}"

    def _missing(self, route: dict[str, Any]) -> list[str]:
        missing = []
        for rule in route["spec"].get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                namespace = ref.get("namespace") or route["metadata"]["namespace"]
                try:
                    self.core.read_namespaced_service(ref["name"], namespace)
                except ApiException as err:
                    if err.status != 404:
                        raise
                    missing.append(f"{namespace}/{ref['name']}")
        return missing

    def _report_routes(self) -> None:
        with self._lock:
            routes = list(self.routes.values())
        for route in routes:
            key = self._key(route)
            entry = parent_status(route, self.gateway, self._missing(route))
            # Other controllers' entries stay; ours replaces our previous one.
            others = [p for p in (route.get("status") or {}).get("parents") or []
                      if p.get("controllerName") != CONTROLLER]  # fmt: skip
            comparable = (route["metadata"].get("generation"),
                          [(c["type"], c["status"]) for c in entry["conditions"]])  # fmt: skip
            if self._written.get(key) == comparable:
                continue
            try:
                self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, route["metadata"]["namespace"], "httproutes",
                    route["metadata"]["name"], {"status": {"parents": [*others, entry]}},
                )  # fmt: skip
                self._written[key] = comparable
            except ApiException as err:
                if err.status != 404:
                    raise

    # --- data plane ---------------------------------------------------------------------------

    def _endpoint(self, backend: Backend) -> tuple[str, int] | None:
        """A ready endpoint of the Service's port, round-robin, from its EndpointSlices."""
        service = self.core.read_namespaced_service(backend.service, backend.namespace)
        port = next((p for p in service.spec.ports or [] if p.port == backend.port), None)
        if port is None:
            return None
        slices = self.discovery.list_namespaced_endpoint_slice(
            backend.namespace, label_selector=f"kubernetes.io/service-name={backend.service}"
        ).items
        found = []
        for piece in slices:
            number = next((p.port for p in piece.ports or [] if (p.name or "") == (port.name or "")),
                          None)  # fmt: skip
            if number is None:
                continue
            found += [(e.addresses[0], number) for e in piece.endpoints or []
                      if e.conditions is None or e.conditions.ready is not False]  # fmt: skip
        if not found:
            return None
        with self._lock:
            turn = self._next_endpoint.get(backend, 0)
            self._next_endpoint[backend] = turn + 1
        return sorted(found)[turn % len(found)]

    def pick(self, candidate: Candidate) -> Backend | None:
        refs = candidate.rule.get("backendRefs") or []
        weights = {Backend(ref.get("namespace") or candidate.namespace, ref["name"],
                           int(ref.get("port") or 80)): int(ref.get("weight", 1))
                   for ref in refs}  # fmt: skip
        key = f"{candidate.route}#{candidate.rank[-1]}"
        with self._lock:
            chooser = self._weights.setdefault(key, SmoothWeighted())
            chooser.set_weights(weights)
            return chooser.pick()

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            routes = list(self.routes.values())
        found = candidates(routes, headers.get("host", ""), request.path, headers)
        if not found:
            self._reply(request, 404, b"no route matches")
            return
        best = found[0]
        backend = self.pick(best)
        endpoint = self._endpoint(backend) if backend else None
        if endpoint is None:
            self._reply(request, 503, b"no healthy upstream")
            return
        out = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for filter_ in best.rule.get("filters") or []:
            modifier = filter_.get("requestHeaderModifier") or {}
            for header in modifier.get("set") or []:
                out = {k: v for k, v in out.items() if k.lower() != header["name"].lower()}
                out[header["name"]] = header["value"]
            for header in modifier.get("add") or []:
                out[header["name"]] = header["value"]
            for name in modifier.get("remove") or []:
                out = {k: v for k, v in out.items() if k.lower() != name.lower()}
        timeout = _seconds((best.rule.get("timeouts") or {}).get("request")) or 60.0
        connection = http.client.HTTPConnection(endpoint[0], endpoint[1], timeout=timeout)
        try:
            connection.request(request.command, request.path, body=body, headers=out)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError:
            self._reply(request, 504, b"upstream request timeout")
            return
        except (OSError, http.client.HTTPException):
            self._reply(request, 502, b"upstream connect error")
            return
        finally:
            connection.close()
        request.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, code: int, data: bytes) -> None:
        request.send_response(code)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)


def _seconds(duration: str | None) -> float | None:
    """A Gateway API duration (``1h2m3s``, ``500ms``) in seconds."""
    if not duration:
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))
