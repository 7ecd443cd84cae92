"""The operator's HTTP client for Prometheus's query API, as Prometheus servers are deployed:
behind a bearer token (OpenShift's thanos-querier, a ServiceAccount token; read from its file
at every query, so a rotated token is picked up), with a private CA, client certificates, and
extra headers (Mimir and Cortex tenants, ``X-Scope-OrgID``). The settings are the operator's
(``MODELDEPLOY_PROMETHEUS_*``, docs/operator.md) and apply to every address it may query,
which its allow-list limits (``prometheus_access``).

Answers are bounded (``MAX_BYTES``) and checked before use: the address may be a tenant's.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from modeldeploy.controller.config import OperatorConfig

MAX_BYTES = 1024 * 1024
"""Most bytes read of one Prometheus answer: one number needs a few hundred."""
ERROR_TYPES = {"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found"}  # fmt: skip
log = logging.getLogger(__name__)


def promql_string(value: str) -> str:
    """``value`` as the inside of a double-quoted PromQL string: backslash, quote and newline
    escaped, so a value can never end the string and add matchers of its own."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class PrometheusAuth:
    """How to reach Prometheus: credentials, TLS and headers (all optional)."""

    bearer_token_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def session(self) -> requests.Session:
        """A session with TLS and headers set; the token is added per request."""
        session = requests.Session()
        session.headers.update(self.headers)
        session.verify = False if self.insecure_skip_verify else (self.ca_file or True)
        if self.cert_file:
            session.cert = (self.cert_file, self.key_file) if self.key_file else self.cert_file
        session.trust_env = False  # no proxy or netrc from the environment changes the target
        return session

    @classmethod
    def from_config(cls, config: OperatorConfig) -> PrometheusAuth:
        """The operator's settings (``MODELDEPLOY_PROMETHEUS_*``)."""
        return cls(
            bearer_token_file=config.prometheus_bearer_token_file,
            ca_file=config.prometheus_ca_file,
            cert_file=config.prometheus_cert_file,
            key_file=config.prometheus_key_file,
            insecure_skip_verify=config.prometheus_insecure_skip_verify,
            headers=dict(config.prometheus_headers),
        )

    def token(self) -> str | None:
        if not self.bearer_token_file:
            return None
        return Path(self.bearer_token_file).read_text().strip()


class PrometheusClient:
    """One Prometheus server's instant queries."""

    def __init__(self, address: str, auth: PrometheusAuth | None = None) -> None:
        self.address = address.rstrip("/")
        self.auth = auth or PrometheusAuth()
        self._session = self.auth.session()

    def __str__(self) -> str:
        return self.address

    def _data(self, query: str, timeout: float) -> dict[str, Any]:
        """The ``data`` of a successful instant query, bounded and checked."""
        token = self.auth.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self._session.get(
            f"{self.address}/api/v1/query", params={"query": query}, headers=headers,
            timeout=timeout, stream=True, allow_redirects=False,
        ) as response:  # fmt: skip
            raw = response.raw.read(MAX_BYTES + 1, decode_content=True)
            status = response.status_code
        if len(raw) > MAX_BYTES:
            raise RuntimeError(f"the answer is larger than {MAX_BYTES} bytes")
        try:
            body: Any = json.loads(raw)
        except ValueError as err:
            raise RuntimeError(
                f"the answer (HTTP {status}) is not a Prometheus API response"
            ) from err
        if not isinstance(body, dict) or body.get("status") != "success":
            # The address may be a tenant's, and this message goes into a status every reader
            # of the namespace sees: the answer's text stays in the operator's log.
            found = body if isinstance(body, dict) else {}
            kind = str(found.get("errorType", "?"))
            kind = kind if kind in ERROR_TYPES else "unknown"
            log.warning("Prometheus at %s answered %s: %.500s", self, kind, found.get("error"))
            raise RuntimeError(f"Prometheus answered an error ({kind}); see the operator's log")
        data = body.get("data") or {}
        return data if isinstance(data, dict) else {}

    def value(self, query: str, timeout: float) -> float | None:
        """The single number ``query`` returns now; None for an empty result or NaN."""
        data = self._data(query, timeout)
        if data.get("resultType") == "scalar":
            value = float(data["result"][1])
        else:
            results = data["result"]
            if not results:
                return None
            if len(results) > 1:
                raise RuntimeError(f"query returned {len(results)} series, expected one: {query}")
            value = float(results[0]["value"][1])
        return None if math.isnan(value) else value

    def vector(self, query: str, timeout: float) -> list[tuple[dict[str, str], float]]:
        """Every series ``query`` returns now, as (labels, value); NaN values left out."""
        data = self._data(query, timeout)
        if data.get("resultType") != "vector":
            raise RuntimeError(f"query returned {data.get('resultType')}, expected a vector")
        found = []
        for series in data.get("result") or []:
            labels = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
            value = float(series["value"][1])
            if not math.isnan(value):
                found.append((labels, value))
        return found
