"""``modeldeploy status|promote|abort|pause|resume NAME``: rollout control from a terminal.

The commands only read the ModelDeployment and set or remove an annotation; the operator does
the rest, exactly as for ``kubectl annotate``. So the CLI needs nothing but permission to patch
ModelDeployments, and a command given while the operator is down is carried out when it is back.
"""

from __future__ import annotations

import json
import os
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


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(kubeconfig: Path | None, context: str | None) -> tuple[Any, str]:
    """An API client and the namespace to use when none is given, as kubectl picks them: in a
    pod (no kubeconfig or context asked for), the pod's own; else the kubeconfig context's
    (``--context``, or the current one), ``default`` when the context names none."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        return client.ApiClient(configuration), namespace
    path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or "~/.kube/config"
    files = [Path(p).expanduser() for p in path.split(os.pathsep) if p]
    if not any(f.is_file() for f in files):
        raise RolloutControlError(
            f"no kubeconfig at {path} (give --kubeconfig or set KUBECONFIG), and not in a pod"
        )
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
        chosen = (
            current
            if context is None
            else next((c for c in contexts if c["name"] == context), None)
        )
        if chosen is None:
            names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
            raise RolloutControlError(f"{path} has no context {context!r} (it has: {names})")
        config.load_kube_config(
            config_file=path, context=chosen["name"], client_configuration=configuration
        )
    except config.ConfigException as err:
        raise RolloutControlError(f"{path}: {err}") from err
    namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return client.ApiClient(configuration), str(namespace)


def _unreachable(host: str, err: Exception) -> str:
    """One line for a server that does not answer, however deep urllib3 wrapped the cause."""
    reason: Any = err
    while getattr(reason, "reason", None) is not None and reason.reason is not reason:
        reason = reason.reason
    text = str(reason).rsplit(": ", 1)[-1] if ": " in str(reason) else str(reason)
    return f"cannot reach the API server at {host}: {text}"


def request(
    action: str,
    name: str,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None = None,
) -> dict[str, Any]:
    """Apply ``action``'s annotations (none for status); return the object as it is after.
    ``namespace`` None: the context's (:func:`connect`)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api_client, default_namespace = connect(kubeconfig, context)
    namespace = namespace or default_namespace
    # One attempt: a server that does not answer is reported at once, not after retries.
    api_client.configuration.retries = 0
    api = client.CustomObjectsApi(api_client)
    try:
        patch = ANNOTATIONS[action]
        if patch:
            response = api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                {"metadata": {"annotations": patch}},
                _content_type="application/merge-patch+json", _preload_content=False,
                _request_timeout=30,
            )  # fmt: skip
        else:
            response = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False,
                _request_timeout=30,
            )  # fmt: skip
    except ApiException as err:
        if err.status == 404:
            raise RolloutControlError(f"ModelDeployment {namespace}/{name} not found") from err
        raise RolloutControlError(f"{err.status} {err.reason}: {err.body}") from err
    except Exception as err:  # urllib3's MaxRetryError, a refused connection, a timeout
        raise RolloutControlError(_unreachable(api_client.configuration.host, err)) from err
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
