"""The operator's own settings: where artifacts go, what the staging Job looks like, how often to
resync. Read once at start-up from flags or ``MODELDEPLOY_*`` environment variables (the Helm
chart sets the latter), then handed to every builder."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from modeldeploy.api import entrypoints
from modeldeploy.artifacts.store import tenant_store

DEFAULT_STAGING_IMAGE = "ghcr.io/modeldeploy/staging:0.1.0"
KSERVE_CANARY_AUTO, KSERVE_CANARY_ON, KSERVE_CANARY_OFF = "auto", "on", "off"


def _egress_list(value: str) -> tuple[str, ...]:
    """``"10.0.0.0/8:443,9000; 192.168.1.5/32"``: entries split on ``;`` or spaces (a comma
    separates an entry's ports)."""
    return tuple(item for item in value.replace(";", " ").split() if item)


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


def _headers(value: str) -> tuple[tuple[str, str], ...]:
    """``Name=value,Name=value`` as header pairs."""
    pairs = []
    for item in _comma_list(value):
        name, sep, header = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"prometheus header {item!r}: use Name=value")
        pairs.append((name.strip(), header.strip()))
    return tuple(pairs)


def egress_rule(entry: str) -> dict[str, Any]:
    """One ``CIDR`` or ``CIDR:port[,port…]`` entry as a NetworkPolicy egress rule (TCP)."""
    match = re.fullmatch(r"(?P<cidr>[^/\s]+/\d{1,3})(?::(?P<ports>[\d,]+))?", entry)
    cidr, ports = (match["cidr"], match["ports"] or "") if match else (entry, "")
    try:
        network = ipaddress.ip_network(cidr, strict=False)
        numbers = [int(p) for p in ports.split(",")] if ports else []
    except ValueError as err:
        raise ValueError(f"staging egress {entry!r}: use CIDR or CIDR:port[,port...]") from err
    if any(not 0 < n < 65536 for n in numbers):
        raise ValueError(f"staging egress {entry!r}: ports are 1-65535")
    rule: dict[str, Any] = {"to": [{"ipBlock": {"cidr": str(network)}}]}
    if numbers:
        rule["ports"] = [{"protocol": "TCP", "port": n} for n in numbers]
    return rule


@dataclass(frozen=True)
class OperatorConfig:
    """Everything a builder needs besides the ModelDeployment itself."""

    artifact_store: str = "pvc://modeldeploy-artifacts/artifacts"
    """s3://bucket/prefix or pvc://claim/prefix; the storageUri of every artifact starts here."""

    artifact_store_secret: str | None = None
    """For s3://: a Secret in the ModelDeployment's namespace with AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY (and optionally AWS_ENDPOINT_URL, AWS_DEFAULT_REGION); mounted into
    the staging Job as environment and checked to exist before anything is created."""

    staging_image: str = DEFAULT_STAGING_IMAGE
    """Image with ``modeldeploy[staging]`` installed; its ``modeldeploy`` is run by the Job."""

    staging_cpu: str = "2"
    staging_memory: str = "8Gi"
    staging_scratch: str = "20Gi"
    """Size limit of the Job's /tmp (the source model, intermediate graphs)."""

    staging_deadline_seconds: int = 1800
    """activeDeadlineSeconds of a staging Job: a hung download or export fails, not waits."""

    staging_backoff_limit: int = 2
    """Retries for failures that may be transient; deterministic failures (exit codes 2, 10-18)
    fail the Job at once through its podFailurePolicy."""

    staging_network_policy: bool = True
    """Give each staging pod a NetworkPolicy: no ingress, and egress only to DNS and
    ``staging_egress``; the pod runs a tenant's pickle, and must reach only the source and the
    store."""

    staging_egress: tuple[str, ...] = ()
    """Where staging pods may connect besides DNS: ``CIDR`` or ``CIDR:port[,port…]`` entries,
    e.g. ``10.0.0.0/8:443,9000`` for in-cluster S3 and HTTPS sources. Empty: DNS only."""

    staging_runtime_class: str | None = None
    """runtimeClassName of staging pods, e.g. gvisor or kata, for a sandbox below the kernel."""

    staging_retries: int = 3
    """Times a staging Job that failed for a transient reason (``SourceUnreachable``,
    ``DestinationUnavailable``) is made again, after 1, 2, 4… times ``staging_retry_seconds``."""

    staging_retry_seconds: float = 60.0

    resync_seconds: float = 60.0
    """Every ModelDeployment is reconciled at least this often, whatever events were missed."""

    workers: int = 32
    """Objects reconciled at once per watched resource; the rest wait their turn."""

    pvc_mount_root: str = "/mnt/pvc"
    """Where the staging Job mounts the PVCs that pvc:// URIs name."""

    gpu_capable_runtimes: tuple[str, ...] = field(default=("kserve-tritonserver",))
    """Runtimes whose image already has CUDA, besides those with a modeldeploy.io/gpu-image
    annotation."""

    prometheus_address: str | None = None
    """Prometheus the canary analysis queries when a ModelDeployment names none; without either,
    the metric checks are skipped (and the analysis says so)."""

    prometheus_allowed: tuple[str, ...] = ()
    """Prometheus base URLs a spec's ``analysis.prometheus.address`` may name, besides
    ``prometheus_address``; any other address is refused (``PrometheusNotAllowed``)."""

    prometheus_bearer_token_file: str | None = None
    """A file holding the bearer token sent to Prometheus (read at each query, so a rotated
    ServiceAccount token is picked up)."""

    prometheus_ca_file: str | None = None
    """PEM bundle that verifies Prometheus's TLS certificate; default: the system's."""

    prometheus_cert_file: str | None = None
    """Client certificate (PEM) for Prometheus behind mutual TLS."""

    prometheus_key_file: str | None = None
    """Its key, when not in the certificate file."""

    prometheus_insecure_skip_verify: bool = False
    """Do not verify Prometheus's certificate (testing only)."""

    prometheus_headers: tuple[tuple[str, str], ...] = ()
    """Extra headers for every query, e.g. X-Scope-OrgID for a Mimir or Cortex tenant."""

    unconfined_queries: bool = False
    """Allow custom queries whose selectors lack ``namespace="{{namespace}}"`` (for a
    Prometheus behind prom-label-proxy); otherwise they are refused (``QueryNotConfined``)."""

    metrics_min_window_seconds: float = 30.0
    """Shortest range the analysis queries cover: the step's elapsed time, but at least this
    (a rate needs two scrapes in its window)."""

    gateway: str = "kserve/kserve-ingress-gateway"
    """namespace/name of the Gateway API Gateway the Standard-mode HTTPRoutes attach to."""

    route_domain: str = "example.com"
    """Standard mode: the HTTPRoute of ModelDeployment NAME in NAMESPACE answers on host
    NAME.NAMESPACE.<route_domain>."""

    entrypoint_modules: tuple[str, ...] = entrypoints.DEFAULT_MODULES
    """Module prefixes a ``state_dict`` entrypoint may come from; others are refused
    (``EntrypointRefused``) before a staging Job exists, and again inside the Job."""

    image_pull_secrets: tuple[str, ...] = ()
    """Secrets (in each ModelDeployment's namespace) for pulling the staging and runtime images:
    given to every staging Job and predictor pod."""

    analysis_timeout_seconds: float = 10.0
    """Longest one Prometheus query or one golden request may take."""

    kserve_canary: str = KSERVE_CANARY_AUTO
    """Standard mode's canary: ``on`` runs it as an entry of KServe 0.20's ``spec.canary`` on the
    one InferenceService; ``off`` as a second InferenceService ``<name>-canary`` (KServe
    0.15-0.19); ``auto`` (the default) asks the installed InferenceService schema at start-up
    (``kserve_features.detect``). Unresolved ``auto`` means ``off``."""

    scale_down_delay_seconds: float = 30.0
    """Standard mode: how long pods the route has just stopped sending to keep running once
    every gateway has accepted it, unless a rollout's ``scaleDownDelay`` says otherwise."""

    @property
    def native_canary(self) -> bool:
        """Whether Standard-mode canaries are KServe ``spec.canary`` entries."""
        return self.kserve_canary == KSERVE_CANARY_ON

    def tenant_store(self, namespace: str) -> str:
        """Namespace ``namespace``'s own prefix of the artifact store: the only part of it
        that namespace's staging Jobs publish to and its analyses and clean-ups read."""
        return tenant_store(self.artifact_store, namespace)

    def __post_init__(self) -> None:
        scheme = urlparse(self.artifact_store).scheme
        if scheme not in ("s3", "pvc"):
            raise ValueError(
                f"artifact store {self.artifact_store!r}: use s3://bucket/prefix or pvc://claim/prefix"
            )
        for entry in self.staging_egress:
            egress_rule(entry)  # ValueError names a malformed entry at start-up
        choices = (KSERVE_CANARY_AUTO, KSERVE_CANARY_ON, KSERVE_CANARY_OFF)
        if self.kserve_canary not in choices:
            raise ValueError(
                f"kserve canary {self.kserve_canary!r}: use one of {', '.join(choices)}"
            )
        if self.gateway.count("/") != 1 or not all(self.gateway.split("/")):
            raise ValueError(f"gateway {self.gateway!r}: use namespace/name")
        if not 0 <= self.scale_down_delay_seconds <= 3600:
            raise ValueError(
                f"MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS {self.scale_down_delay_seconds:g}: "
                "use 0 to 3600 seconds"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> OperatorConfig:
        """Settings from ``MODELDEPLOY_*`` variables; explicit ``overrides`` (flags) win."""
        env = dict(os.environ if env is None else env)
        names: dict[str, tuple[str, Callable[[str], object]]] = {
            "artifact_store": ("MODELDEPLOY_ARTIFACT_STORE", str),
            "artifact_store_secret": ("MODELDEPLOY_ARTIFACT_STORE_SECRET", str),
            "staging_image": ("MODELDEPLOY_STAGING_IMAGE", str),
            "staging_cpu": ("MODELDEPLOY_STAGING_CPU", str),
            "staging_memory": ("MODELDEPLOY_STAGING_MEMORY", str),
            "staging_deadline_seconds": ("MODELDEPLOY_STAGING_DEADLINE_SECONDS", int),
            "staging_backoff_limit": ("MODELDEPLOY_STAGING_BACKOFF_LIMIT", int),
            "staging_retries": ("MODELDEPLOY_STAGING_RETRIES", int),
            "staging_network_policy": ("MODELDEPLOY_STAGING_NETWORK_POLICY", _flag),
            "staging_egress": ("MODELDEPLOY_STAGING_EGRESS", _egress_list),
            "staging_runtime_class": ("MODELDEPLOY_STAGING_RUNTIME_CLASS", str),
            "staging_retry_seconds": ("MODELDEPLOY_STAGING_RETRY_SECONDS", float),
            "resync_seconds": ("MODELDEPLOY_RESYNC_SECONDS", float),
            "workers": ("MODELDEPLOY_WORKERS", int),
            "prometheus_address": ("MODELDEPLOY_PROMETHEUS_ADDRESS", str),
            "metrics_min_window_seconds": ("MODELDEPLOY_METRICS_MIN_WINDOW_SECONDS", float),
            "gateway": ("MODELDEPLOY_GATEWAY", str),
            "route_domain": ("MODELDEPLOY_ROUTE_DOMAIN", str),
            "entrypoint_modules": (entrypoints.ENV, _comma_list),
            "image_pull_secrets": ("MODELDEPLOY_IMAGE_PULL_SECRETS", _comma_list),
            "prometheus_allowed": ("MODELDEPLOY_PROMETHEUS_ALLOWED", _comma_list),
            "prometheus_bearer_token_file": ("MODELDEPLOY_PROMETHEUS_BEARER_TOKEN_FILE", str),
            "prometheus_ca_file": ("MODELDEPLOY_PROMETHEUS_CA_FILE", str),
            "prometheus_cert_file": ("MODELDEPLOY_PROMETHEUS_CERT_FILE", str),
            "prometheus_key_file": ("MODELDEPLOY_PROMETHEUS_KEY_FILE", str),
            "prometheus_insecure_skip_verify": (
                "MODELDEPLOY_PROMETHEUS_INSECURE_SKIP_VERIFY",
                _flag,
            ),
            "prometheus_headers": ("MODELDEPLOY_PROMETHEUS_HEADERS", _headers),
            "unconfined_queries": ("MODELDEPLOY_UNCONFINED_QUERIES", _flag),
            "kserve_canary": ("MODELDEPLOY_KSERVE_CANARY", str),
            "scale_down_delay_seconds": ("MODELDEPLOY_SCALE_DOWN_DELAY_SECONDS", float),
        }
        values: dict[str, object] = {}
        for attr, (var, kind) in names.items():
            if env.get(var):
                values[attr] = kind(env[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
