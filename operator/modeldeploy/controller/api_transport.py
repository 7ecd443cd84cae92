"""The operator's requests and watches to the API server, on asyncio: aiohttp with the
credentials the ``kubernetes`` client loaded.

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
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from kubernetes import client
from kubernetes.client.rest import ApiException

JSON = "application/json"

REQUEST_TIMEOUT_SECONDS = 60.0
"""A request that has had no answer by then is failed (and retried as transient)."""

MAX_LINE_BYTES = 16 * 1024 * 1024
"""A watch event longer than this is refused: the API server's own request limit is 3 MiB for a
write, and etcd's for a stored object 1.5 MiB, so a longer line is not an object."""


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


def _refused(response: aiohttp.ClientResponse, payload: bytes) -> ApiException:
    """An HTTP error as the generated client raises it."""
    err = ApiException(status=response.status, reason=response.reason)
    err.body = payload.decode(errors="replace")
    err.headers = dict(response.headers)
    return err


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
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        """The pooled session for requests (False) and the one for watches (True), each of this
        loop. A watch holds its connection for minutes, one per resource and namespace watched:
        from the requests' bounded pool, nine watches would starve the requests, or each other."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self, streaming: bool = False) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._sessions, self._loop = {}, loop
        session = self._sessions.get(streaming)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl, limit=0 if streaming else self._limit
                ),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            )
            self._sessions[streaming] = session
        return session

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
                raise _refused(response, payload)
        return orjson.loads(payload) if payload else None

    async def lines(
        self, path: str, *, query: dict[str, str], read_timeout: float
    ) -> AsyncIterator[bytes]:
        """A streamed answer (a watch) line by line, as raw bytes; an ``ApiException`` when it
        is refused, ``TimeoutError`` when nothing arrives for ``read_timeout`` seconds."""
        async with self._current(streaming=True).get(
            self._host + path,
            params=query,
            headers=self._headers(JSON, None),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=read_timeout),
            **self._routing,
        ) as response:
            if response.status >= 400:
                raise _refused(response, await response.read())
            pending = b""
            # Split here rather than with the stream's readline, whose line limit is far below
            # what one object may be.
            async for chunk in response.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if line:
                        yield line
                if len(pending) > MAX_LINE_BYTES:
                    raise ValueError(f"{path}: a watch event over {MAX_LINE_BYTES} bytes")
            if pending.strip():
                yield pending

    async def aclose(self) -> None:
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        self._sessions = {}
