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

CODE_DIR = "/opt/modeldeploy/code"
"""Where the spec's code ConfigMap is mounted in the fetch and stage containers."""
NON_RETRYABLE_EXIT_CODES = [2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 22]
"""Invalid spec and the staging failures that another attempt cannot fix (docs/staging.md);
18 (store unavailable), 21 (source unreachable) and crashes are retried up to backoffLimit,
and the operator makes a Job that failed for 18 or 21 again (``staging_retries``)."""

ATTEMPT_ANNOTATION = "modeldeploy.io/attempt"

RUN_AS = 1000


FINISHED_TTL_SECONDS = 600
"""How long a finished staging or clean-up Job (and its pod's logs) stays before the TTL
controller deletes it."""


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
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    config: OperatorConfig,
    pod_failure_policy: dict[str, Any] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": config.staging_backoff_limit,
        "activeDeadlineSeconds": config.staging_deadline_seconds,
        # The TTL controller deletes a finished Job (the operator records its result at once and
        # never deletes one itself): one write less per staging, and its logs stay a while.
        "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
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
                **(
                    {"imagePullSecrets": [{"name": n} for n in config.image_pull_secrets]}
                    if config.image_pull_secrets
                    else {}
                ),
                **({"initContainers": init_containers} if init_containers else {}),
                "containers": containers,
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


INPUTS, OUTPUT = "/staging/inputs", "/staging/output"
"""Where the staging pod's steps hand over: ``fetch`` writes the inputs, ``stage`` reads them
and writes the output, ``publish`` reads both (modeldeploy.staging.plan)."""


def _store_env(deployment: ModelDeployment, config: OperatorConfig) -> list[dict[str, Any]]:
    namespace = deployment.metadata.namespace or "default"
    return [
        {"name": "MODELDEPLOY_ARTIFACT_STORE", "value": config.tenant_store(namespace)},
        {"name": "MODELDEPLOY_PVC_ROOT", "value": config.pvc_mount_root},
        {"name": "PYTHONNOUSERSITE", "value": "1"},
    ]


def _secret_env(config: OperatorConfig) -> list[dict[str, Any]]:
    return (
        [{"secretRef": {"name": config.artifact_store_secret}}]
        if config.artifact_store_secret
        else []
    )


def _claim_volumes(
    deployment: ModelDeployment, config: OperatorConfig
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each pvc:// claim's mount (read-only; the store's is writable) by claim name, and the
    volumes behind them."""
    mounts: dict[str, dict[str, Any]] = {}
    volumes: list[dict[str, Any]] = []
    for index, (claim, writable) in enumerate(sorted(_claims(deployment, config).items())):
        volume = f"pvc-{index}"
        mounts[claim] = {
            "name": volume,
            "mountPath": f"{config.pvc_mount_root}/{claim}",
            "readOnly": not writable,
        }
        volumes.append(
            {
                "name": volume,
                "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable},
            }
        )
    return mounts, volumes


def _store_claim(config: OperatorConfig) -> str | None:
    store = config.artifact_store
    return urlparse(store).netloc if store.startswith("pvc://") else None


def _container(
    name: str,
    config: OperatorConfig,
    command: list[str],
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    env_from: list[dict[str, Any]] | None = None,
    resources: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources = resources or {"cpu": config.staging_cpu, "memory": config.staging_memory}
    return {
        "name": name,
        "image": config.staging_image,
        "command": command,
        # Copies: the steps share entries, and a manifest shares no objects (no YAML anchors).
        "env": [
            *(dict(e) for e in env),
            {"name": "HOME", "value": "/tmp"},
            {"name": "TMPDIR", "value": "/tmp"},
        ],
        "envFrom": [dict(e) for e in env_from or []],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _container_security(),
        "volumeMounts": [dict(m) for m in mounts],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _scratch(name: str, config: OperatorConfig) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": config.staging_scratch}}


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
            include={"model", "optimization", "serving", "monitoring"},
        ),
    }


DNS_EGRESS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
"""Name lookups go to the cluster DNS (CoreDNS and kube-dns both carry k8s-app: kube-dns)."""


def build_staging_network_policy(namespace: str, config: OperatorConfig) -> dict[str, Any]:
    """The NetworkPolicy of every staging pod in ``namespace``: no ingress at all, and egress to
    the cluster DNS and the operator's ``staging_egress`` only. A staging pod runs the tenant's
    pickle; it needs the source and the store, and nothing else in or out of the cluster.

    One per namespace, not one per ModelDeployment: the rules are the operator's, the same for
    every staging pod, and one object made once costs one write where one per deployment cost
    a write for each."""
    selector = {naming.MANAGED_BY: naming.MANAGER, naming.ROLE_LABEL: naming.STAGING}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": naming.STAGING_POLICY,
            "namespace": namespace,
            "labels": {naming.MANAGED_BY: naming.MANAGER},
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [DNS_EGRESS, *(egress_rule(e) for e in config.staging_egress)],
        },
    }


def job_attempt(job: dict[str, Any]) -> int:
    """Which attempt a staging Job is (1 for Jobs made before attempts were counted)."""
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(ATTEMPT_ANNOTATION, "1")
    return int(value) if str(value).isdigit() and int(value) >= 1 else 1


def build_staging_job(
    deployment: ModelDeployment, uid: str, config: OperatorConfig, attempt: int = 1
) -> dict[str, Any]:
    """The Job that stages ``deployment``'s model; its name carries the staging hash, its
    ``modeldeploy.io/attempt`` annotation which attempt it is.

    Three containers, so that the tenant's code never holds the store (docs/security.md):
    ``fetch`` and ``publish`` run only our code and reach the store under the namespace's
    prefix; ``stage``, between them, loads the tenant's model with no credentials, no claims
    and no store, reading what ``fetch`` left and writing only its own output folder."""
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    digest = staging_hash(deployment, config.tenant_store(namespace))
    labels = {**naming.labels(name, naming.STAGING), naming.HASH_LABEL: digest}
    claims, claim_volumes = _claim_volumes(deployment, config)
    store_claim = _store_claim(config)
    document = {
        "name": "MODELDEPLOY_DEPLOYMENT",
        "value": json.dumps(deployment_document(deployment)),
    }
    handover = [
        {"name": "MODELDEPLOY_STAGING_INPUTS", "value": INPUTS},
        {"name": "MODELDEPLOY_STAGING_OUTPUT", "value": OUTPUT},
    ]
    trusted_tmp = {"name": "trusted-tmp", "mountPath": "/tmp"}
    # The spec's code (a ConfigMap), read-only: hashed into the key by fetch, run by stage.
    code = deployment.spec.model.code
    code_mounts = [{"name": "code", "mountPath": CODE_DIR, "readOnly": True}] if code else []
    code_env = [{"name": "MODELDEPLOY_CODE_DIR", "value": CODE_DIR}] if code else []
    code_volumes = (
        [{"name": "code", "configMap": {"name": code.config_map, **(
            {"items": [i.model_dump(mode="json") for i in code.items]} if code.items else {})}}]
        if code
        else []
    )  # fmt: skip

    def step(which: str) -> list[str]:
        return ["modeldeploy", "stage", "--step", which]

    fetch = _container(
        naming.FETCH_CONTAINER,
        config,
        step("fetch"),
        [*_store_env(deployment, config), document, *handover, *code_env],
        [
            trusted_tmp,
            {"name": "inputs", "mountPath": INPUTS},
            *({**m, "readOnly": True} for m in claims.values()),
            *code_mounts,
        ],
        _secret_env(config),
    )
    stage = _container(
        naming.STAGE_CONTAINER,
        config,
        step("build"),
        [
            document,
            *handover,
            {"name": entrypoints.ENV, "value": ",".join(config.entrypoint_modules)},
            *code_env,
        ],
        [
            {"name": "scratch", "mountPath": "/tmp"},
            {"name": "inputs", "mountPath": INPUTS, "readOnly": True},
            {"name": "output", "mountPath": OUTPUT},
            *code_mounts,
        ],
    )
    publish = _container(
        naming.PUBLISH_CONTAINER,
        config,
        step("publish"),
        [
            *_store_env(deployment, config),
            document,
            *handover,
            {"name": "MODELDEPLOY_OWNER", "value": naming.owner_mark(namespace, name)},
        ],
        [
            trusted_tmp,
            {"name": "inputs", "mountPath": INPUTS, "readOnly": True},
            {"name": "output", "mountPath": OUTPUT, "readOnly": True},
            *([claims[store_claim]] if store_claim else []),
        ],
        _secret_env(config),
    )
    # Exit codes count in every container: a FailJob rule without containerName covers the
    # init containers too.
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"operator": "In", "values": NON_RETRYABLE_EXIT_CODES},
            }
        ]
    }
    job = _job(
        naming.staging_job_name(name, digest),
        namespace,
        labels,
        naming.owner_reference(name, uid),
        [publish],
        [
            *(_scratch(v, config) for v in ("trusted-tmp", "scratch", "inputs", "output")),
            *claim_volumes,
            *code_volumes,
        ],
        config,
        policy,
        init_containers=[fetch, stage],
    )
    job["metadata"]["annotations"] = {ATTEMPT_ANNOTATION: str(attempt)}
    return job


def build_cleanup_job(
    deployment: ModelDeployment, uid: str, config: OperatorConfig
) -> dict[str, Any]:
    """The Job that removes the artifacts only ``deployment`` used, on deletion."""
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    claims, claim_volumes = _claim_volumes(deployment, config)
    store_claim = _store_claim(config)
    # Only the store is touched: drop the read-only source claims.
    mounts = [
        {"name": "scratch", "mountPath": "/tmp"},
        *([claims[store_claim]] if store_claim else []),
    ]
    volumes = [
        _scratch("scratch", config),
        *(v for v in claim_volumes if store_claim and v["name"] == claims[store_claim]["name"]),
    ]
    container = _container(
        naming.STAGE_CONTAINER,
        config,
        ["modeldeploy", "artifacts", "release", "--name", name,
         "--owner", naming.owner_mark(namespace, name)],
        _store_env(deployment, config),
        mounts,
        _secret_env(config),
        {"cpu": "100m", "memory": "256Mi"},
    )  # fmt: skip
    job = _job(
        naming.cleanup_job_name(name, uid),
        namespace,
        naming.labels(name, naming.CLEANUP),
        naming.owner_reference(name, uid),
        [container],
        volumes,
        config,
    )
    # The owner is being deleted; the Job must outlive the finalizer, so it is not owned.
    del job["metadata"]["ownerReferences"]
    job["spec"]["ttlSecondsAfterFinished"] = FINISHED_TTL_SECONDS
    job["spec"]["backoffLimit"] = 3
    return job
