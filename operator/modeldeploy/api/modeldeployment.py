"""The ModelDeployment resource: spec, status and the names it is known by."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from modeldeploy.api.base import DNS_LABEL, ApiModel, CelRule, nested
from modeldeploy.api.model import ModelSpec
from modeldeploy.api.monitoring import MonitoringSpec
from modeldeploy.api.optimization import OptimizationSpec
from modeldeploy.api.rollout import RolloutSpec
from modeldeploy.api.serving import DEFAULT_RUNTIME, TRITON_RUNTIME, DeploymentMode, ServingSpec
from modeldeploy.api.status import ModelDeploymentStatus

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ("mdep",)

MAX_NAME_LENGTH = 45
"""KServe derives Service and Deployment names such as ``<name>-predictor-<hash>`` from it; 45
characters leaves room for those within the 63-character label limit."""

NAME_RULE = (
    f"size(self.metadata.name) <= {MAX_NAME_LENGTH} && self.metadata.name.matches('{DNS_LABEL}')"
)
NAME_MESSAGE = (
    f"name must be a lowercase RFC 1035 label (a-z, 0-9, '-', starting with a letter)"
    f" of at most {MAX_NAME_LENGTH} characters"
)


def name_is_valid(name: str) -> bool:
    """The Python half of :data:`NAME_RULE`."""
    return len(name) <= MAX_NAME_LENGTH and re.fullmatch(DNS_LABEL, name) is not None


def measures_errors(spec: ModelDeploymentSpec) -> bool:
    """Whether the runtime's request and error counts are known (docs/canary.md#metrics): our
    runtime's and Triton's own counters, or Knative's queue-proxy for any runtime."""
    serving = spec.serving
    return (
        serving.runtime in (DEFAULT_RUNTIME, TRITON_RUNTIME)
        or serving.deployment_mode == DeploymentMode.KNATIVE
    )


def measures_latency(spec: ModelDeploymentSpec) -> bool:
    """Whether a latency histogram is known: our runtime's, or Knative's queue-proxy. Triton's
    ``nv_inference_request_duration_us`` is a sum, from which no p99 can be read."""
    serving = spec.serving
    return serving.runtime == DEFAULT_RUNTIME or serving.deployment_mode == DeploymentMode.KNATIVE


_KNOWN = f"['{DEFAULT_RUNTIME}', '{TRITON_RUNTIME}']"


class ModelDeploymentSpec(ApiModel):
    """Desired state: which model, how it is optimized, how it is served and rolled out."""

    model: ModelSpec
    """The trained model to serve."""

    optimization: OptimizationSpec = nested(OptimizationSpec)
    """Export, precision and parity options for the staging Job."""

    serving: ServingSpec = nested(ServingSpec)
    """The KServe InferenceService that serves the artifact."""

    rollout: RolloutSpec = nested(RolloutSpec)
    """How a changed model rolls out."""

    monitoring: MonitoringSpec = nested(MonitoringSpec)
    """What the model's drift is measured against."""

    # A threshold on a metric nobody measures would always pass: refuse it instead.
    cel_rules = (
        CelRule(
            cel="!has(self.rollout.analysis.maxErrorRate)"
            f" || self.serving.runtime in {_KNOWN} || self.serving.deploymentMode == 'Knative'",
            message=f"maxErrorRate needs a runtime whose errors are measured: {DEFAULT_RUNTIME} "
            f"or {TRITON_RUNTIME}, or any runtime in Knative mode (see docs/canary.md#metrics)",
            field_path=".rollout.analysis.maxErrorRate",
            holds=lambda s: s.rollout.analysis.max_error_rate is None or measures_errors(s),
        ),
        CelRule(
            cel="!(has(self.rollout.analysis.maxP99LatencyMs)"
            " || has(self.rollout.analysis.maxLatencyRatio))"
            f" || self.serving.runtime == '{DEFAULT_RUNTIME}'"
            " || self.serving.deploymentMode == 'Knative'",
            message=f"maxP99LatencyMs and maxLatencyRatio need a latency histogram: runtime "
            f"{DEFAULT_RUNTIME}, or any runtime in Knative mode; {TRITON_RUNTIME} exports none "
            "in Standard mode (see docs/canary.md#metrics)",
            field_path=".rollout.analysis",
            holds=lambda s: (
                (
                    s.rollout.analysis.max_p99_latency_ms is None
                    and s.rollout.analysis.max_latency_ratio is None
                )
                or measures_latency(s)
            ),
        ),
        CelRule(
            cel="!has(self.rollout.analysis.maxPredictionPsi)"
            f" || self.serving.runtime == '{DEFAULT_RUNTIME}'",
            message=f"maxPredictionPsi needs the runtime that counts answers by class: "
            f"{DEFAULT_RUNTIME}",
            field_path=".rollout.analysis.maxPredictionPsi",
            holds=lambda s: (
                s.rollout.analysis.max_prediction_psi is None
                or s.serving.runtime == DEFAULT_RUNTIME
            ),
        ),
        CelRule(
            cel=f"!has(self.rollout.shadow) || self.serving.runtime == '{DEFAULT_RUNTIME}'",
            message=f"a shadow phase needs the runtime that mirrors and compares: "
            f"{DEFAULT_RUNTIME}",
            field_path=".rollout.shadow",
            holds=lambda s: s.rollout.shadow is None or s.serving.runtime == DEFAULT_RUNTIME,
        ),
    )


class ObjectMeta(ApiModel):
    """The part of metadata a ModelDeployment file needs; the rest is the API server's."""

    model_config = ApiModel.model_config | {"extra": "allow"}

    name: Annotated[str, Field(min_length=1)]
    """Object name; also the InferenceService's name."""

    namespace: str | None = None
    """Namespace."""

    labels: dict[str, str] | None = None
    """Labels."""

    annotations: dict[str, str] | None = None
    """Annotations."""


class ModelDeployment(ApiModel):
    """A trained model served on KServe, staged and verified by ModelDeploy."""

    api_version: Literal["modeldeploy.io/v1alpha1"] = Field(
        "modeldeploy.io/v1alpha1", alias="apiVersion"
    )
    """modeldeploy.io/v1alpha1."""

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    """ModelDeployment."""

    metadata: ObjectMeta
    """Standard object metadata."""

    spec: ModelDeploymentSpec
    """Desired state."""

    status: ModelDeploymentStatus | None = None
    """Observed state, written by the operator."""

    def to_manifest(self) -> dict[str, Any]:
        """The object as it is written to YAML or sent to the API server."""
        return self.wire()
