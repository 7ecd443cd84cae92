"""``spec.serving``: the KServe InferenceService the operator creates for the staged artifact."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from modeldeploy.api.base import (
    DNS_LABEL,
    ApiModel,
    CelRule,
    Duration,
    Quantity,
    duration_seconds,
    nested,
)

DEFAULT_RUNTIME = "modeldeploy-onnx"
"""Our ClusterServingRuntime (runtimes/): the ONNX Runtime server on the kserve SDK."""
TRITON_RUNTIME = "kserve-tritonserver"
"""KServe's Triton runtime: its own metrics count errors, but it exports no latency histogram."""

LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class DeploymentMode(StrEnum):
    """KServe deployment mode."""

    KNATIVE = "Knative"
    STANDARD = "Standard"


class Protocol(StrEnum):
    """Inference protocol the predictor speaks."""

    V2 = "v2"
    GRPC_V2 = "grpc-v2"


class TolerationOperator(StrEnum):
    """Toleration operator."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """Taint effect a toleration matches."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """An extra toleration for the predictor pods (the nvidia.com/gpu one is added for GPUs)."""

    key: Annotated[str, Field(max_length=253)] | None = None
    """Taint key; empty with operator Exists matches every taint."""

    operator: TolerationOperator = TolerationOperator.EQUAL
    """Exists or Equal."""

    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value for operator Equal."""

    effect: TaintEffect | None = None
    """Taint effect to match; empty matches all effects."""

    toleration_seconds: Annotated[int, Field(ge=0)] | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""

    cel_rules = (
        CelRule(
            cel="self.operator != 'Exists' || !has(self.value)",
            message="a toleration with operator Exists must not set a value",
            field_path=".value",
            holds=lambda t: t.operator != TolerationOperator.EXISTS or t.value is None,
        ),
    )


class Resources(ApiModel):
    """Compute resources of one predictor pod."""

    cpu: Quantity = "1"
    """CPU request and limit, e.g. 2 or 500m. The runtime sizes its thread pools to it."""

    memory: Quantity = "2Gi"
    """Memory request and limit, e.g. 4Gi."""

    gpu: Annotated[int, Field(ge=0, le=16)] = 0
    """NVIDIA GPUs (nvidia.com/gpu) per pod."""

    gpu_type: Annotated[str, Field(pattern=LABEL_VALUE, max_length=63)] | None = None
    """GPU product as GPU feature discovery labels it (nvidia.com/gpu.product), e.g.
    NVIDIA-A100-SXM4-80GB; becomes a node selector."""

    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Extra tolerations, for example for a dedicated inference node pool."""

    cel_rules = (
        CelRule(
            cel="!has(self.gpuType) || self.gpu > 0",
            message="gpuType needs gpu > 0",
            field_path=".gpuType",
            holds=lambda r: r.gpu_type is None or r.gpu > 0,
        ),
    )


class ScaleMetric(StrEnum):
    """Autoscaling metric."""

    CONCURRENCY = "concurrency"
    RPS = "rps"
    CPU = "cpu"
    MEMORY = "memory"


class Scaling(ApiModel):
    """Autoscaling of the predictor."""

    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Fewest pods; 0 scales to zero (Knative mode only)."""

    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Most pods."""

    metric: ScaleMetric = ScaleMetric.CPU
    """What the autoscaler tracks: concurrency or rps (Knative), cpu or memory (both modes)."""

    target: Annotated[int, Field(ge=1, le=100_000)] = 80
    """Target value per pod: in-flight requests, requests per second, or utilisation percent."""

    cel_rules = (
        CelRule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not be greater than maxReplicas",
            field_path=".minReplicas",
            holds=lambda s: s.min_replicas <= s.max_replicas,
        ),
    )


class Batching(ApiModel):
    """Dynamic batching inside the runtime: concurrent requests run as one ONNX Runtime call."""

    max_batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    """Largest merged batch; 1 turns batching off. Also the max_batch_size of config.pbtxt."""

    max_queue_delay: Duration = "2ms"
    """Longest a request waits for others to join its batch, e.g. 2ms; at most 1s."""

    max_queue_size: Annotated[int, Field(ge=1, le=100_000)] = 128
    """Most requests waiting for a batch; one more is refused at once (HTTP 503, gRPC
    RESOURCE_EXHAUSTED) instead of queueing behind them."""

    request_timeout: Duration = "30s"
    """Deadline of one request inside the runtime, queueing and inference included (HTTP 504,
    gRPC DEADLINE_EXCEEDED); at most 10m."""

    cel_rules = (
        CelRule(
            cel="duration(self.maxQueueDelay) <= duration('1s')",
            message="maxQueueDelay must be at most 1s",
            field_path=".maxQueueDelay",
            holds=lambda b: duration_seconds(b.max_queue_delay) <= 1.0,
        ),
        CelRule(
            cel="duration(self.requestTimeout) >= duration('1ms') && "
            "duration(self.requestTimeout) <= duration('10m')",
            message="requestTimeout must be between 1ms and 10m",
            field_path=".requestTimeout",
            holds=lambda b: 0.001 <= duration_seconds(b.request_timeout) <= 600.0,
        ),
    )


class Probe(ApiModel):
    """Overrides of one health probe's timing; unset fields keep the operator's defaults."""

    initial_delay_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    """Seconds before the first probe."""

    period_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds between probes."""

    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds before one probe times out."""

    failure_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Consecutive failures before the probe fails."""


class Probes(ApiModel):
    """Health probe overrides. Readiness is /v2/models/{name}/ready (true only after the startup
    self-test passes), liveness is /v2/health/live."""

    readiness: Probe | None = None
    """Readiness probe overrides."""

    liveness: Probe | None = None
    """Liveness probe overrides."""

    startup: Probe | None = None
    """Startup probe overrides; must allow for model load plus self-test."""


class ServingSpec(ApiModel):
    """How the artifact is served."""

    runtime: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] = DEFAULT_RUNTIME
    """ClusterServingRuntime or ServingRuntime name: modeldeploy-onnx (ours) or kserve-tritonserver."""

    deployment_mode: DeploymentMode = DeploymentMode.STANDARD
    """Standard (Deployment + HPA, Gateway API for canary traffic) or Knative (serverless,
    scale to zero, canaryTrafficPercent)."""

    protocol: Protocol = Protocol.V2
    """v2 (REST Open Inference Protocol) or grpc-v2."""

    resources: Resources = nested(Resources)
    """Compute resources per pod."""

    scaling: Scaling = nested(Scaling)
    """Autoscaling."""

    batching: Batching = nested(Batching)
    """Dynamic batching in the runtime."""

    probes: Probes = nested(Probes)
    """Health probe overrides."""

    cel_rules = (
        CelRule(
            cel="self.deploymentMode == 'Knative' || self.scaling.minReplicas >= 1",
            message="minReplicas 0 (scale to zero) needs deploymentMode Knative",
            field_path=".scaling.minReplicas",
            holds=lambda s: (
                s.deployment_mode == DeploymentMode.KNATIVE or s.scaling.min_replicas >= 1
            ),
        ),
        CelRule(
            cel="self.deploymentMode == 'Knative' || self.scaling.metric in ['cpu', 'memory']",
            message="metric concurrency or rps needs deploymentMode Knative; Standard mode scales on cpu or memory",
            field_path=".scaling.metric",
            holds=lambda s: (
                s.deployment_mode == DeploymentMode.KNATIVE
                or s.scaling.metric in (ScaleMetric.CPU, ScaleMetric.MEMORY)
            ),
        ),
    )
