"""The analysis's Prometheus client against a real HTTPS server on loopback, as Prometheus is
deployed behind auth: a private CA, a bearer token read from its file at each query (so a
rotated ServiceAccount token is used at once), tenant headers. And every value the operator
puts into PromQL is escaped, so a name can never close its string and add a matcher."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from modeldeploy.controller.analysis import custom_query
from modeldeploy.controller.metric_sources import selector
from modeldeploy.controller.prometheus_client import PrometheusAuth, PrometheusClient
from modeldeploy.controller.rollout import Target
from tests.support.controlplane import _write_certificates


class GuardedPrometheus(http.server.BaseHTTPRequestHandler):
    """Answers ``/api/v1/query`` with 42 for the right token and tenant, 401 otherwise."""

    token: ClassVar[str] = ""
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        authorized = self.headers.get("Authorization") == f"Bearer {self.token}"
        tenant = self.headers.get("X-Scope-OrgID") == "team-a"
        if not (authorized and tenant):
            body = {"status": "error", "errorType": "unauthorized", "error": "no"}
            self.send_response(401)
        else:
            body = {"status": "success",
                    "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "42"]}]}}  # fmt: skip
            self.send_response(200)
        data = json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    _write_certificates(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GuardedPrometheus)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "apiserver.crt", tmp_path / "apiserver.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", tmp_path / "ca.crt"
    server.shutdown()


def test_the_token_file_is_read_at_each_query_and_headers_and_the_ca_are_used(
    tls_prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    address, ca = tls_prometheus
    token = tmp_path / "token"
    token.write_text("first\n")
    GuardedPrometheus.token = "first"
    auth = PrometheusAuth(bearer_token_file=str(token), ca_file=str(ca),
                          headers={"X-Scope-OrgID": "team-a"})  # fmt: skip
    client = PrometheusClient(address, auth)
    assert client.value("up", timeout=5) == 42.0
    token.write_text("second\n")  # the kubelet rotated the projected token
    GuardedPrometheus.token = "second"
    assert client.value("up", timeout=5) == 42.0
    assert GuardedPrometheus.seen[-1]["Authorization"] == "Bearer second"


def test_without_the_ca_or_the_token_the_query_fails_and_says_nothing_of_the_answer(
    tls_prometheus: tuple[str, Path],
) -> None:
    address, ca = tls_prometheus
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        PrometheusClient(address).value("up", timeout=5)
    no_token = PrometheusClient(address, PrometheusAuth(ca_file=str(ca)))
    with pytest.raises(RuntimeError, match=r"Prometheus answered an error \(unknown\)"):
        no_token.value("up", timeout=5)


def test_values_put_into_promql_are_escaped() -> None:
    hostile = 'x",namespace=~".*'
    assert selector("ns", hostile, "r") == (
        'namespace="ns",modeldeploy_deployment="x\\",namespace=~\\".*",modeldeploy_revision="r"'
    )
    target = Target(
        "ml", hostile, "m", "c", "s", None, "pvc://a/b", None, 60, "modeldeploy-onnx", True
    )
    assert custom_query('up{d="{{deployment}}"}', target) == 'up{d="x\\",namespace=~\\".*"}'
