"""``modeldeploy status|promote|abort|pause|resume NAME``: rollout control from a terminal.

The commands only read the ModelDeployment and set or remove an annotation; the operator does
the rest, exactly as for ``kubectl annotate``. So the CLI needs nothing but permission to patch
ModelDeployments, and a command given while the operator is down is carried out when it is back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION
from modeldeploy.controller import naming

ANNOTATIONS: dict[str, dict[str, str | None]] = {
    "status": {},
    "promote": {naming.PROMOTE_ANNOTATION: "true"},
    "abort": {naming.ABORT_ANNOTATION: "true"},
    "pause": {naming.PAUSE_ANNOTATION: "true"},
    "resume": {naming.PAUSE_ANNOTATION: None, naming.RESUME_ANNOTATION: "true"},
}


class RolloutControlError(RuntimeError):
    """The ModelDeployment cannot be read or annotated; the message says why."""


def request(action: str, name: str, namespace: str, kubeconfig: Path | None) -> dict[str, Any]:
    """Apply ``action``'s annotations (none for status); return the object as it is after."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from modeldeploy.controller.kube import load_client

    try:
        api = client.CustomObjectsApi(load_client(str(kubeconfig) if kubeconfig else None))
        patch = ANNOTATIONS[action]
        if patch:
            response = api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                {"metadata": {"annotations": patch}},
                _content_type="application/merge-patch+json", _preload_content=False,
            )  # fmt: skip
        else:
            response = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            )
    except ApiException as err:
        if err.status == 404:
            raise RolloutControlError(f"ModelDeployment {namespace}/{name} not found") from err
        raise RolloutControlError(f"{err.status} {err.reason}: {err.body}") from err
    except Exception as err:  # no kubeconfig, unreachable server
        raise RolloutControlError(str(err)) from err
    body: dict[str, Any] = json.loads(response.data)
    return body


def describe(body: dict[str, Any]) -> str:
    """A few lines a person reads: revisions, phase and step, weights, last analysis."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    spec_steps = ((body.get("spec") or {}).get("rollout") or {}).get("steps") or []
    revisions = status.get("revisions") or {}
    rollout = status.get("rollout") or {}
    traffic = status.get("traffic") or {}
    annotations = meta.get("annotations") or {}
    lines = [f"{meta.get('namespace')}/{meta.get('name')}"]
    lines.append(
        f"  stable:   {revisions.get('stable', '-')}  {revisions.get('stableUri', '')}".rstrip()
    )
    if revisions.get("canary"):
        lines.append(f"  canary:   {revisions['canary']}  {revisions.get('canaryUri', '')}")
    if revisions.get("failed"):
        lines.append(f"  failed:   {revisions['failed']}  (no traffic until the spec changes)")
    phase = rollout.get("phase") or "-"
    step = int(rollout.get("step") or 0)
    if spec_steps and phase in ("Progressing", "Paused", "Failed", "Inconclusive"):
        weight = spec_steps[min(step, len(spec_steps) - 1)].get("weight")
        lines.append(f"  phase:    {phase}, step {step + 1}/{len(spec_steps)} (target {weight}%)")
    else:
        lines.append(f"  phase:    {phase}")
    lines.append(
        f"  traffic:  stable {traffic.get('stable', 100)}%, canary {traffic.get('canary', 0)}%"
    )
    analysis = rollout.get("analysis")
    if analysis:
        verdict = "passed" if analysis.get("passed") else "FAILED"
        lines.append(
            f"  analysis: {verdict} at {analysis.get('at')}: {rollout.get('lastAnalysis')}"
        )
    if rollout.get("failure"):
        lines.append(f"  failure:  {rollout['failure']}")
    pending = [k for k in (naming.PROMOTE_ANNOTATION, naming.ABORT_ANNOTATION) if k in annotations]
    if naming.PAUSE_ANNOTATION in annotations:
        pending.append(f"{naming.PAUSE_ANNOTATION}={annotations[naming.PAUSE_ANNOTATION]}")
    if pending:
        lines.append(f"  pending:  {', '.join(pending)} (the operator acts on these)")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("Ready", "RolloutProgressing", "Degraded"):
        c = conditions.get(kind)
        if c:
            lines.append(f"  {kind}: {c.get('status')} {c.get('reason')}: {c.get('message', '')}")
    return "\n".join(lines)
