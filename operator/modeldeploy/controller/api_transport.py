"""The operator's requests to the API server, on asyncio: aiohttp (the HTTP library kopf's own
watches use) with the credentials the ``kubernetes`` client loaded.

Why not the generated client in a thread pool, as before: under ``py-spy --gil`` a quarter of
the operator's CPU was that client's per-call machinery (``validate_call`` wrappers, building
the request through its layers, urllib3) and the hand-off of every call to a thread and back.
A reconciliation makes a handful of plain REST calls whose paths are known; here each is one
coroutine on one pooled connection, its body encoded and decoded with orjson.

Failures keep the generated client's shape: an HTTP error is a
``kubernetes.client.rest.ApiException`` with ``status``, ``reason`` and ``body``, so callers
that tell a 404 from a 409 or report a 422 read it as before.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp
import orjson
from kubernetes import client
from kubernetes.client.rest import ApiException

JSON = "application/json"

REQUEST_TIMEOUT_SECONDS = 60.0
"""A request that has had no answer by then is failed (and retried as transient)."""


def ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    """TLS as the kubeconfig or the pod's service account describe it: the cluster's CA, and a
    client certificate where one is given."""
    if not configuration.host.startswith("https"):
        return False
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert, cadata=configuration.ca_cert_data
    )
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class ApiTransport:
    """One connection pool to the API server, for the event loop that uses it.

    The session belongs to the running loop it was made in; a caller on another loop (tests
    that run several ``asyncio.run``) gets a new one. ``aclose`` closes the current one."""

    def __init__(self, configuration: client.Configuration, user_agent: str, limit: int) -> None:
        self._configuration = configuration
        self._host = configuration.host.rstrip("/")
        self._user_agent = user_agent
        self._limit = limit
        self._ssl = ssl_context(configuration)
        # A kubeconfig's proxy-url and tls-server-name, as the generated client honours them.
        self._routing: dict[str, Any] = {}
        if configuration.proxy:
            self._routing["proxy"] = configuration.proxy
        if configuration.tls_server_name:
            self._routing["server_hostname"] = configuration.tls_server_name
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            )
            self._loop = loop
        return self._session

    def _headers(self, accept: str, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": accept, "User-Agent": self._user_agent}
        if content_type is not None:
            headers["Content-Type"] = content_type
        # Asked on every request: the kubernetes client's refresh hook re-reads a projected
        # service-account token, or runs a kubeconfig's exec plugin, when the old one expires.
        token = self._configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = JSON,
    ) -> Any:
        """The decoded JSON answer (None for an empty one); an ``ApiException`` for 4xx/5xx,
        ``aiohttp.ClientError`` or ``TimeoutError`` when no answer came."""
        data = None if body is None else orjson.dumps(body)
        if data is not None and content_type is None:
            content_type = JSON
        async with self._current().request(
            method,
            self._host + path,
            params=query,
            data=data,
            headers=self._headers(accept, content_type),
            **self._routing,
        ) as response:
            payload = await response.read()
            if response.status >= 400:
                err = ApiException(status=response.status, reason=response.reason)
                err.body = payload.decode(errors="replace")
                err.headers = dict(response.headers)
                raise err
        return orjson.loads(payload) if payload else None

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
