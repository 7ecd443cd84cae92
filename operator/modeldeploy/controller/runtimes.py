"""Which serving runtime a ModelDeployment runs on, and whether it can run it at all.

A spec can pass the API server's validation and still not work here: the runtime it names is
not installed, it does not serve ONNX or the chosen protocol, or GPUs are requested from a
runtime that has no GPU image. These are found before anything is created, and reported as a
condition with a reason of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import ServingRuntimeRef

GPU_IMAGE_ANNOTATION = "modeldeploy.io/gpu-image"


@dataclass(frozen=True)
class Blocker:
    """Why the operator will not act on a spec; becomes Ready=False with this reason."""

    reason: str
    message: str


def resolve_runtime(
    deployment: ModelDeployment,
    namespaced: dict[str, Any] | None,
    cluster: dict[str, Any] | None,
    config: OperatorConfig,
) -> ServingRuntimeRef | Blocker:
    """KServe's lookup order: a ServingRuntime in the namespace, then a ClusterServingRuntime."""
    serving = deployment.spec.serving
    found, kind = (
        (namespaced, "ServingRuntime") if namespaced else (cluster, "ClusterServingRuntime")
    )
    if not found:
        return Blocker(
            "RuntimeNotFound",
            f"spec.serving.runtime: no ServingRuntime or ClusterServingRuntime named "
            f"{serving.runtime!r} (install runtimes/ or the KServe runtimes)",
        )
    spec = found.get("spec", {})
    if spec.get("disabled"):
        return Blocker(
            "RuntimeDisabled", f"spec.serving.runtime: {kind} {serving.runtime} is disabled"
        )
    formats = [f.get("name") for f in spec.get("supportedModelFormats") or []]
    if "onnx" not in formats:
        return Blocker(
            "RuntimeUnsupportedFormat",
            f"spec.serving.runtime: {kind} {serving.runtime} does not serve onnx "
            f"(supportedModelFormats: {', '.join(map(str, formats)) or 'none'})",
        )
    protocols = spec.get("protocolVersions") or ["v1"]
    if serving.protocol.value not in protocols:
        return Blocker(
            "RuntimeUnsupportedProtocol",
            f"spec.serving.protocol: {kind} {serving.runtime} speaks {', '.join(protocols)}, "
            f"not {serving.protocol.value}",
        )
    gpu_image = (found.get("metadata", {}).get("annotations") or {}).get(GPU_IMAGE_ANNOTATION)
    if (
        serving.resources.gpu
        and not gpu_image
        and serving.runtime not in config.gpu_capable_runtimes
    ):
        return Blocker(
            "RuntimeHasNoGpuImage",
            f"spec.serving.resources.gpu: {kind} {serving.runtime} has no GPU image "
            f"(annotation {GPU_IMAGE_ANNOTATION}); set gpu: 0 or choose a GPU runtime",
        )
    return ServingRuntimeRef(serving.runtime, kind, gpu_image)
