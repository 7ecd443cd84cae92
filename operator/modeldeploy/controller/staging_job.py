"""The Kubernetes Jobs that run ``modeldeploy stage`` (and ``modeldeploy artifacts release``).

Pure: a ModelDeployment and the operator's settings in, a Job manifest out. The Job is where
untrusted model files are opened, so it gets nothing it does not need: non-root, read-only root
filesystem, no capabilities, no service-account token, a deadline, and a scratch volume.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from modeldeploy.api import entrypoints
from modeldeploy.api.artifact import staging_hash
from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.controller import naming
from modeldeploy.controller.config import OperatorConfig, egress_rule

NON_RETRYABLE_EXIT_CODES = [2, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20]
"""Invalid spec and the staging failures that another attempt cannot fix (docs/staging.md);
18 (store unavailable), 21 (source unreachable) and crashes are retried up to backoffLimit,
and the operator makes a Job that failed for 18 or 21 again (``staging_retries``)."""

ATTEMPT_ANNOTATION = "modeldeploy.io/attempt"

RUN_AS = 1000


def _claims(deployment: ModelDeployment, config: OperatorConfig) -> dict[str, bool]:
    """PVC claim name → whether the Job writes to it, for every pvc:// URI it touches."""
    spec = deployment.spec
    uris = [spec.model.uri]
    post = spec.model.postprocessing
    for options in (post.classification, post.detection):
        if options is not None and options.labels_uri:
            uris.append(options.labels_uri)
    quantization = spec.optimization.quantization
    if quantization is not None and quantization.calibration is not None:
        uris.append(quantization.calibration.uri)
    claims = {urlparse(u).netloc: False for u in uris if u.startswith("pvc://")}
    if config.artifact_store.startswith("pvc://"):
        claims[urlparse(config.artifact_store).netloc] = True
    return claims


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _job(
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict[str, Any],
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    config: OperatorConfig,
    pod_failure_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": config.staging_backoff_limit,
        "activeDeadlineSeconds": config.staging_deadline_seconds,
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": _pod_security(),
                **(
                    {"runtimeClassName": config.staging_runtime_class}
                    if config.staging_runtime_class
                    else {}
                ),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if pod_failure_policy:
        spec["podFailurePolicy"] = pod_failure_policy
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def _store_access(
    deployment: ModelDeployment, config: OperatorConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """env, envFrom, volumeMounts and volumes that reach the sources and the artifact store."""
    env = [
        {"name": "MODELDEPLOY_ARTIFACT_STORE", "value": config.artifact_store},
        {"name": "MODELDEPLOY_PVC_ROOT", "value": config.pvc_mount_root},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    env_from = (
        [{"secretRef": {"name": config.artifact_store_secret}}]
        if config.artifact_store_secret
        else []
    )
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "scratch", "emptyDir": {"sizeLimit": config.staging_scratch}}
    ]
    for index, (claim, writable) in enumerate(sorted(_claims(deployment, config).items())):
        volume = f"pvc-{index}"
        mounts.append(
            {
                "name": volume,
                "mountPath": f"{config.pvc_mount_root}/{claim}",
                "readOnly": not writable,
            }
        )
        volumes.append(
            {
                "name": volume,
                "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable},
            }
        )
    return env, env_from, mounts, volumes


def deployment_document(deployment: ModelDeployment) -> dict[str, Any]:
    """What the Job is told to stage: the spec, and the name and namespace it belongs to."""
    return {
        "apiVersion": deployment.api_version,
        "kind": deployment.kind,
        "metadata": {"name": deployment.metadata.name, "namespace": deployment.metadata.namespace},
        "spec": deployment.spec.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            include={"model", "optimization", "serving"},
        ),
    }


def build_staging_job(
    deployment: ModelDeployment, uid: str, config: OperatorConfig, attempt: int = 1
) -> dict[str, Any]:
    """The Job that stages ``deployment``'s model; its name carries the staging hash, its
    ``modeldeploy.io/attempt`` annotation which attempt it is."""
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    digest = staging_hash(deployment, config.artifact_store)
    labels = {**naming.labels(name, naming.STAGING), naming.HASH_LABEL: digest}
    env, env_from, mounts, volumes = _store_access(deployment, config)
    env += [
        {"name": "MODELDEPLOY_DEPLOYMENT", "value": json.dumps(deployment_document(deployment))},
        {"name": "MODELDEPLOY_OWNER", "value": naming.owner_mark(namespace, name)},
        {"name": entrypoints.ENV, "value": ",".join(config.entrypoint_modules)},
    ]
    resources = {"cpu": config.staging_cpu, "memory": config.staging_memory}
    container = {
        "name": naming.STAGE_CONTAINER,
        "image": config.staging_image,
        "command": ["modeldeploy", "stage"],
        "env": env,
        "envFrom": env_from,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _container_security(),
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": naming.STAGE_CONTAINER,
                    "operator": "In",
                    "values": NON_RETRYABLE_EXIT_CODES,
                },
            }
        ]
    }
    job = _job(
        naming.staging_job_name(name, digest),
        namespace,
        labels,
        naming.owner_reference(name, uid),
        container,
        volumes,
        config,
        policy,
    )
    job["metadata"]["annotations"] = {ATTEMPT_ANNOTATION: str(attempt)}
    return job


DNS_EGRESS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
"""Name lookups go to the cluster DNS (CoreDNS and kube-dns both carry k8s-app: kube-dns)."""


def build_staging_network_policy(
    deployment: ModelDeployment, uid: str, config: OperatorConfig
) -> dict[str, Any]:
    """A NetworkPolicy for ``deployment``'s staging pods: no ingress at all, and egress to the
    cluster DNS and the operator's ``staging_egress`` only. The pod runs the tenant's pickle;
    it needs the source and the store, and nothing else in or out of the cluster."""
    name = deployment.metadata.name
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": naming.staging_policy_name(name),
            "namespace": deployment.metadata.namespace or "default",
            "labels": naming.labels(name, naming.STAGING),
            "ownerReferences": [naming.owner_reference(name, uid)],
        },
        "spec": {
            "podSelector": {"matchLabels": naming.labels(name, naming.STAGING)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS_EGRESS, *(egress_rule(e) for e in config.staging_egress)],
        },
    }


def job_attempt(job: dict[str, Any]) -> int:
    """Which attempt a staging Job is (1 for Jobs made before attempts were counted)."""
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(ATTEMPT_ANNOTATION, "1")
    return int(value) if str(value).isdigit() and int(value) >= 1 else 1


def build_cleanup_job(
    deployment: ModelDeployment, uid: str, config: OperatorConfig
) -> dict[str, Any]:
    """The Job that removes the artifacts only ``deployment`` used, on deletion."""
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    env, env_from, mounts, volumes = _store_access(deployment, config)
    # Only the store is touched: drop the read-only source claims.
    store_claim = (
        urlparse(config.artifact_store).netloc
        if config.artifact_store.startswith("pvc://")
        else None
    )
    keep = {
        m["name"]
        for m in mounts
        if m["name"] == "scratch" or m["mountPath"].endswith(f"/{store_claim}")
    }
    mounts = [m for m in mounts if m["name"] in keep]
    volumes = [v for v in volumes if v["name"] in keep]
    resources = {"cpu": "100m", "memory": "256Mi"}
    container = {
        "name": naming.STAGE_CONTAINER,
        "image": config.staging_image,
        "command": ["modeldeploy", "artifacts", "release"],
        "args": ["--name", name, "--owner", naming.owner_mark(namespace, name)],
        "env": env,
        "envFrom": env_from,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _container_security(),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    job = _job(
        naming.cleanup_job_name(name, uid),
        namespace,
        naming.labels(name, naming.CLEANUP),
        naming.owner_reference(name, uid),
        container,
        volumes,
        config,
    )
    # The owner is being deleted; the Job must outlive the finalizer, so it is not owned.
    del job["metadata"]["ownerReferences"]
    job["spec"]["ttlSecondsAfterFinished"] = 600
    job["spec"]["backoffLimit"] = 3
    return job
