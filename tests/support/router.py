"""A weighted HTTP router: the part of Knative (or a gateway) that splits an InferenceService's
traffic between revisions, for the local executor.

Smooth weighted round-robin (nginx's algorithm), so a 10% canary gets exactly every tenth
request rather than about one in ten: the canary tests can then reason about how many requests
each side saw. Keep-alive on both sides, as tritonclient reuses its connections.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Hashable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


T = TypeVar("T", bound=Hashable)


class SmoothWeighted(Generic[T]):
    """Smooth weighted round-robin over upstreams: each pick adds every weight to its upstream's
    current score and takes the highest, which then pays back the total. Not thread-safe."""

    def __init__(self) -> None:
        self._weights: dict[T, int] = {}
        self._current: dict[T, int] = {}

    def set_weights(self, weights: dict[T, int]) -> None:
        """Zero weights get nothing; an upstream kept keeps its score."""
        self._weights = {u: w for u, w in weights.items() if w > 0}
        self._current = {u: self._current.get(u, 0) for u in self._weights}

    def pick(self) -> T | None:
        if not self._weights:
            return None
        total = sum(self._weights.values())
        for upstream, weight in self._weights.items():
            self._current[upstream] += weight
        chosen = max(self._current, key=lambda u: self._current[u])
        self._current[chosen] -= total
        return chosen


def forwarding_handler(
    forward: Callable[[BaseHTTPRequestHandler], None],
) -> type[BaseHTTPRequestHandler]:
    """An HTTP/1.1 (keep-alive) handler class that hands every request to ``forward``, quietly."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _forward(self) -> None:
            forward(self)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward  # noqa: N815

    return Handler


class WeightedRouter:
    """Listens on 127.0.0.1:``port`` and forwards each request to one upstream port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._chooser: SmoothWeighted[int] = SmoothWeighted()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), forwarding_handler(self.forward))
        self._server.daemon_threads = True
        self._local = threading.local()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_weights(self, weights: dict[int, int]) -> None:
        """upstream port → weight; zero weights get nothing."""
        with self._lock:
            self._chooser.set_weights(weights)

    def pick(self) -> int | None:
        with self._lock:
            return self._chooser.pick()

    def _connection(self, port: int) -> http.client.HTTPConnection:
        pool: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        if port not in pool:
            pool[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        return pool[port]

    def forward(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        port = self.pick()
        if port is None:
            self._reply(request, 503, {}, b"no ready revision")
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in (1, 2):  # a kept-alive connection the upstream closed: once more
            connection = self._connection(port)
            try:
                connection.request(request.command, request.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.pool.pop(port, None)
                if attempt == 2:
                    self._reply(request, 502, {}, b"upstream unreachable")
                    return
        out = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        self._reply(request, response.status, out, data)

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, code: int, headers: dict[str, str], data: bytes
    ) -> None:
        request.send_response(code)
        for key, value in headers.items():
            if key.lower() != "content-length":
                request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
