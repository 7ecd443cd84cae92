"""The chart's finalizer policy (``charts/modeldeploy/templates/finalizer-policy.yaml``) as the
tests and the benchmark install it, and how they know it is in effect.

The API server loads a MutatingAdmissionPolicy and its binding from its own watch, a second or
two after they are written; a ModelDeployment created before that gets its finalizer from the
operator instead. A server-side dry-run create runs admission without storing anything, so it
says when the policy applies."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from modeldeploy.controller.naming import FINALIZER
from tests.support.cluster import wait_until
from tests.support.controlplane import REPO_ROOT, ControlPlane

CHART = REPO_ROOT / "charts" / "modeldeploy"
MUTATING_POLICIES = ["--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"]
"""What ``helm install`` learns from a Kubernetes >= 1.36 API server; ``helm template`` must be
told."""


def install(plane: ControlPlane) -> None:
    """The chart's policy and binding, rendered by the real ``helm`` and applied: every
    namespace, as a release watching the whole cluster binds it."""
    rendered = subprocess.run(
        [plane.assets.binary("helm"), "template", "md", str(CHART),
         "--show-only", "templates/finalizer-policy.yaml", *MUTATING_POLICIES],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    plane.kubectl("apply", "--server-side", "-f", "-", input=rendered.stdout)


def in_effect(api: client.ApiClient, namespace: str) -> bool:
    """A ModelDeployment created in ``namespace`` now would come back with the finalizer."""
    example = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    body: dict[str, Any] = {**example, "metadata": {"name": "policy-probe"}}
    try:
        answer = client.CustomObjectsApi(api).create_namespaced_custom_object(
            "modeldeploy.io", "v1alpha1", namespace, "modeldeployments", body, dry_run="All"
        )
    except ApiException as err:
        if err.status == 503:  # the CRD helm just applied is not served yet
            return False
        raise
    return FINALIZER in (answer["metadata"].get("finalizers") or [])


def wait_in_effect(api: client.ApiClient, namespace: str, timeout: float = 30) -> None:
    wait_until("the chart's finalizer policy in effect", lambda: in_effect(api, namespace), timeout)
