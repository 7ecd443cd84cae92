"""Labels, annotations and names of the objects the operator owns.

Names are deterministic (derived from the ModelDeployment and its staging hash), so a crashed
and restarted operator, or two handlers racing, find the object the other one created instead
of creating a second one: a create that conflicts is a no-op.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.modeldeployment import API_VERSION, KIND

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "modeldeploy"
DEPLOYMENT_LABEL = "modeldeploy.io/deployment"
ROLE_LABEL = "modeldeploy.io/role"
HASH_LABEL = "modeldeploy.io/staging-hash"
REVISION_LABEL = "modeldeploy.io/revision"
"""On predictor pods: the revision (staging hash) they serve. Prometheus relabels it to
``modeldeploy_revision``, which is how the analysis tells canary metrics from stable ones."""

PROMOTE_ANNOTATION = "modeldeploy.io/promote"
"""Set to ``step`` to end the current step now (the next step, or promotion after the last), or
to any other value (``full``, ``true``) to promote the canary now, skipping every step left; the
operator removes it once done."""
PROMOTE_STEP = "step"
"""The promote annotation's value that advances one step, as Argo Rollouts' ``promote``."""
ABORT_ANNOTATION = "modeldeploy.io/abort"
"""Set to send all traffic back to stable and fail the rollout; removed once done."""
PAUSE_ANNOTATION = "modeldeploy.io/pause"
"""While present (value "true"), the rollout holds its step and weights."""
RESUME_ANNOTATION = "modeldeploy.io/resume"
"""Set to retry a step whose analysis was inconclusive; removed once done."""
RETRY_ANNOTATION = "modeldeploy.io/retry"
"""Set to roll out again, from the first step, a revision whose rollout failed or was aborted
(or to retry an inconclusive step); removed once done."""
FIELD_MANAGER = "modeldeploy-operator"
"""Server-side apply field manager: fields other tools set on our objects stay theirs."""

FINALIZER = "modeldeploy.io/artifacts"
"""Held until the artifacts only this ModelDeployment used are removed from the store."""

STAGING = "staging"
STAGING_POLICY = "modeldeploy-staging"
"""The NetworkPolicy of every staging pod in a namespace."""
STABLE = "stable"
CANARY = "canary"
CLEANUP = "cleanup"
STAGE_CONTAINER = "stage"
"""The staging Job's container that runs the tenant's code (and the clean-up Job's only one)."""
FETCH_CONTAINER = "fetch"
PUBLISH_CONTAINER = "publish"
"""The staging Job's steps that run only our code, before and after ``stage``."""


def staging_job_name(deployment: str, staging_hash: str) -> str:
    """``<name>-stage-<hash10>``: at most 45 + 7 + 10 characters, a valid Job name."""
    return f"{deployment}-stage-{staging_hash}"


def canary_name(deployment: str) -> str:
    """Standard mode: the InferenceService the canary runs as, beside the stable one."""
    return f"{deployment}-canary"


def route_name(deployment: str) -> str:
    """Standard mode: our HTTPRoute. Never ``<name>``: KServe 0.20 with Gateway API names its
    own top-level route after the InferenceService, and the two would overwrite each other."""
    return f"{deployment}-traffic"


def predictor_service(isvc: str, predictor: str = "") -> str:
    """The Service (and Deployment) KServe creates for an InferenceService's predictor in
    Standard mode: ``<isvc>-predictor``, or ``<isvc>-<predictor>-predictor`` for a named one
    (KServe 0.20's ``predictor.name``, and each ``spec.canary[]`` entry's)."""
    return f"{isvc}-{predictor}-predictor" if predictor else f"{isvc}-predictor"


CANARY_SLOTS = ("a", "b")
"""KServe 0.20's ``spec.canary``: the two ``predictor.name`` values stable and canary take turns
with. A promotion renames stable to the canary's slot (KServe's promotion without a restart), so
the next canary takes the other one. One letter, because KServe labels the pods
``app: isvc.<isvc>-<slot>-predictor``, a label value of at most 63 characters: a 45-character
ModelDeployment name leaves room for two."""


def canary_slot(stable_predictor: str) -> str:
    """The ``predictor.name`` of the canary beside a stable predictor named ``stable_predictor``
    ("" for KServe's unnamed default)."""
    return CANARY_SLOTS[1] if stable_predictor == CANARY_SLOTS[0] else CANARY_SLOTS[0]


def cleanup_job_name(deployment: str, uid: str) -> str:
    """Per object (uid), so a recreated ModelDeployment of the same name gets its own."""
    return f"{deployment}-cleanup-{uid[:8]}"


def owner_mark(namespace: str, name: str) -> str:
    """How the artifact store records that a ModelDeployment uses an artifact."""
    return f"{namespace}.{name}"


def labels(deployment: str, role: str | None = None) -> dict[str, str]:
    found = {MANAGED_BY: MANAGER, DEPLOYMENT_LABEL: deployment}
    if role:
        found[ROLE_LABEL] = role
    return found


OWNED = {MANAGED_BY: MANAGER}
"""The label every object the operator makes carries, and its watches and listings select by."""


def selector(labels: dict[str, str]) -> str:
    """A label selector that matches exactly ``labels``."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def managed(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` carries ``OWNED``."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY) == MANAGER


def owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    """Whether ``obj`` lists the ModelDeployment ``uid`` among its owners."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """Children go with their ModelDeployment (garbage collection), and ``kubectl get`` shows
    who made them."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
