"""``modeldeploy render``: the operator's objects for a ModelDeployment, without a cluster.

The same builders the handlers use, so what is printed is what would be created.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.inference_service import ServingRuntimeRef, build_inference_service
from modeldeploy.controller.runtimes import GPU_IMAGE_ANNOTATION
from modeldeploy.controller.staging_job import build_staging_job

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def render_objects(
    deployment: ModelDeployment, config: OperatorConfig, artifact_uri: str | None = None
) -> list[dict[str, Any]]:
    """The staging Job and the InferenceService, in the order they are created."""
    name = deployment.metadata.name
    if deployment.metadata.namespace is None:
        deployment = deployment.model_copy(
            update={"metadata": deployment.metadata.model_copy(update={"namespace": "default"})}
        )
    store = config.tenant_store(deployment.metadata.namespace or "default")
    uri = artifact_uri or f"{store}/{name}-<content-key>"
    runtime = ServingRuntimeRef(
        deployment.spec.serving.runtime,
        "ClusterServingRuntime",
        f"<{GPU_IMAGE_ANNOTATION} of the runtime>"
        if deployment.spec.serving.resources.gpu
        else None,
    )
    return [
        build_staging_job(deployment, PLACEHOLDER_UID, config),
        build_inference_service(
            deployment, PLACEHOLDER_UID, uri, runtime, pull_secrets=config.image_pull_secrets
        ),
    ]
