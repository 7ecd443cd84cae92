"""The KServe InferenceService (serving.kserve.io/v1beta1) that serves a staged artifact.

Pure: ModelDeployment + artifact URI + the serving runtime it runs on → manifest. Applied with
server-side apply, so only the fields built here are ours; anything else on the object (an
annotation another controller adds, KServe's defaults) stays with whoever set it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api import mirror
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.serving import DEFAULT_RUNTIME, DeploymentMode, Probe, Protocol
from modeldeploy.controller import naming, shadow

API_VERSION = "serving.kserve.io/v1beta1"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"
"""Knative mode: KServe gives the latest and previous revisions their own URLs (tags latest and
prev in status.components.predictor.traffic), which the analysis sends golden requests to."""
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label GPU feature discovery sets, e.g. NVIDIA-A100-SXM4-80GB."""

HTTP_PORT = 8080
GRPC_PORT = 8081

# Defaults of the three probes: (initialDelay, period, timeout, failureThreshold).
READINESS = Probe(initial_delay_seconds=0, period_seconds=5, timeout_seconds=2, failure_threshold=3)
LIVENESS = Probe(initial_delay_seconds=0, period_seconds=10, timeout_seconds=5, failure_threshold=3)
STARTUP = Probe(initial_delay_seconds=0, period_seconds=5, timeout_seconds=2, failure_threshold=120)
"""Ten minutes for download, session creation (TensorRT engine builds are slow) and the
golden-sample self-test, before liveness takes over."""


@dataclass(frozen=True)
class ServingRuntimeRef:
    """The ServingRuntime or ClusterServingRuntime a ModelDeployment names, as found."""

    name: str
    kind: str
    gpu_image: str | None = None
    """Image to use when GPUs are requested (annotation modeldeploy.io/gpu-image)."""


def _probe(path: str, defaults: Probe, override: Probe | None) -> dict[str, Any]:
    merged = defaults.model_copy(
        update=override.model_dump(exclude_none=True) if override is not None else {}
    )
    return {
        "httpGet": {"path": path, "port": HTTP_PORT},
        **merged.model_dump(by_alias=True, exclude_none=True),
    }


@dataclass(frozen=True)
class CanaryEntry:
    """KServe 0.20's ``spec.canary[0]``: the candidate beside stable on one InferenceService."""

    slot: str
    """Its ``predictor.name`` (``naming.canary_slot``): KServe names its Deployment and Service
    ``<isvc>-<slot>-predictor``."""
    uri: str
    revision: str
    traffic_percent: int
    """What KServe records as the canary's share (``status.canaryStatuses``). KServe 0.20 does
    not weight its own route by it; ours carries the same number (``route.py``)."""


def canary_replicas(stable_min: int, weight: int) -> int:
    """The canary's fixed replicas for ``weight`` percent: stable's minimum scaled to the share,
    at least one (so it is ready before it gets any weight, kserve#5983), at most stable's (KServe
    refuses more). KServe's own default would give a canary at 0% no pods at all."""
    return max(1, min(stable_min, -(-stable_min * weight // 100)))


def _canary(predictor: dict[str, Any], entry: CanaryEntry, stable_min: int) -> dict[str, Any]:
    """``spec.canary[0]`` from the predictor its artifact would have as stable. KServe merges it
    over stable's predictor (mergo, override) and refuses autoscaling fields on a canary; the
    rest is spelled out in full, so that after a promotion (the rename) stable's pod template is
    the canary's, field for field, and KServe has no reason to restart the pods."""
    fixed = {k: v for k, v in predictor.items() if k not in AUTOSCALING}
    fixed["name"] = entry.slot
    fixed["minReplicas"] = canary_replicas(stable_min, entry.traffic_percent)
    return {"predictor": fixed, "trafficPercent": entry.traffic_percent}


AUTOSCALING = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "autoScaling",
               "canaryTrafficPercent", "name")  # fmt: skip
"""Predictor fields a ``spec.canary`` entry must not carry, or carries its own value of."""


def build_inference_service(
    deployment: ModelDeployment,
    uid: str,
    artifact_uri: str,
    runtime: ServingRuntimeRef,
    revision: str | None = None,
    canary_percent: int | None = None,
    isvc_name: str | None = None,
    role: str | None = None,
    pull_secrets: tuple[str, ...] = (),
    predictor_name: str = "",
    canary: CanaryEntry | None = None,
) -> dict[str, Any]:
    """The InferenceService for ``deployment`` serving the artifact at ``artifact_uri``.

    ``revision`` labels the predictor pods (for the analysis's metric queries);
    ``canary_percent`` is Knative mode's ``canaryTrafficPercent`` (None: all traffic to the
    latest ready revision); ``isvc_name``/``role`` name Standard mode's separate canary;
    ``pull_secrets`` become the predictor pods' imagePullSecrets. With KServe 0.20's
    ``spec.canary``: ``predictor_name`` is stable's ``predictor.name`` and ``canary`` the
    candidate beside it.
    """
    found = _build(deployment, uid, artifact_uri, runtime, revision, canary_percent, isvc_name,
                   role, pull_secrets)  # fmt: skip
    predictor = found["spec"]["predictor"]
    if predictor_name:
        predictor["name"] = predictor_name
    if canary is not None:
        candidate = _build(deployment, uid, canary.uri, runtime, canary.revision, None, None,
                           None, pull_secrets)["spec"]["predictor"]  # fmt: skip
        stable_min = deployment.spec.serving.scaling.min_replicas
        found["spec"]["canary"] = [_canary(candidate, canary, stable_min)]
    return found


def _build(
    deployment: ModelDeployment,
    uid: str,
    artifact_uri: str,
    runtime: ServingRuntimeRef,
    revision: str | None,
    canary_percent: int | None,
    isvc_name: str | None,
    role: str | None,
    pull_secrets: tuple[str, ...],
) -> dict[str, Any]:
    name = deployment.metadata.name
    serving = deployment.spec.serving
    res = serving.resources
    quantities: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    if res.gpu:
        quantities[GPU_RESOURCE] = str(res.gpu)
    model: dict[str, Any] = {
        "modelFormat": {"name": "onnx"},
        "runtime": runtime.name,
        "storageUri": artifact_uri,
        "protocolVersion": serving.protocol.value,
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        "readinessProbe": _probe(f"/v2/models/{name}/ready", READINESS, serving.probes.readiness),
        "livenessProbe": _probe("/v2/health/live", LIVENESS, serving.probes.liveness),
        "startupProbe": _probe(f"/v2/models/{name}/ready", STARTUP, serving.probes.startup),
    }
    volumes = []
    if runtime.name == DEFAULT_RUNTIME:
        # From the first deploy on, so that a shadow starts and stops without restarting stable
        # (controller/shadow.py); only the revision the ConfigMap names as source mirrors.
        volumes.append(shadow.shadow_volume(name))
        model["volumeMounts"] = [dict(shadow.SHADOW_MOUNT)]
        if revision is not None:
            model["env"] = [{"name": mirror.REVISION_ENV, "value": revision}]
    if serving.protocol == Protocol.GRPC_V2:
        model["ports"] = [{"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"}]
    if res.gpu and runtime.gpu_image:
        model["image"] = runtime.gpu_image
    predictor: dict[str, Any] = {
        "minReplicas": serving.scaling.min_replicas,
        "maxReplicas": serving.scaling.max_replicas,
        "scaleMetric": serving.scaling.metric.value,
        "scaleTarget": serving.scaling.target,
        "model": model,
        # A model server has no business with the API server: no token in its pods, so a model
        # (or whoever gets into its process) cannot act as the namespace's default account.
        "automountServiceAccountToken": False,
    }
    if volumes:
        predictor["volumes"] = volumes
    if pull_secrets:
        predictor["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    if revision is not None:
        predictor["labels"] = {naming.DEPLOYMENT_LABEL: name, naming.REVISION_LABEL: revision}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    tolerations = [
        t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in res.tolerations or []
    ]
    if res.gpu:
        tolerations.insert(0, {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        predictor["tolerations"] = tolerations
    if res.gpu_type:
        predictor["nodeSelector"] = {GPU_PRODUCT_LABEL: res.gpu_type}
    knative = serving.deployment_mode == DeploymentMode.KNATIVE
    annotations = {DEPLOYMENT_MODE_ANNOTATION: "Knative" if knative else "Standard"}
    if knative:
        annotations[TAG_ROUTING_ANNOTATION] = "true"
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": isvc_name or name,
            "namespace": deployment.metadata.namespace or "default",
            "labels": naming.labels(name, role),
            "annotations": annotations,
            "ownerReferences": [naming.owner_reference(name, uid)],
        },
        "spec": {"predictor": predictor},
    }
