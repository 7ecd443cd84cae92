"""``modeldeploy list|status|promote|abort|pause|resume|retry``: rollout control from a terminal.

The commands only read the ModelDeployment and set or remove an annotation; the operator does
the rest, exactly as for ``kubectl annotate``. So the CLI needs nothing but permission to patch
ModelDeployments, and a command given while the operator is down is carried out when it is back.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modeldeploy.api.modeldeployment import GROUP, PLURAL, VERSION
from modeldeploy.api.status import RolloutPhase, RolloutStatus, shadow_pending
from modeldeploy.controller import naming

ANNOTATIONS: dict[str, dict[str, str | None]] = {
    "status": {},
    # As Argo Rollouts' promote: a pause is skipped too, so the pause annotation goes.
    "promote": {naming.PROMOTE_ANNOTATION: naming.PROMOTE_STEP, naming.PAUSE_ANNOTATION: None},
    "promote-full": {naming.PROMOTE_ANNOTATION: "full", naming.PAUSE_ANNOTATION: None},
    "abort": {naming.ABORT_ANNOTATION: "true"},
    "pause": {naming.PAUSE_ANNOTATION: "true"},
    "resume": {naming.PAUSE_ANNOTATION: None, naming.RESUME_ANNOTATION: "true"},
    "retry": {naming.PAUSE_ANNOTATION: None, naming.RETRY_ANNOTATION: "true"},
}


class RolloutControlError(RuntimeError):
    """The ModelDeployment cannot be read or annotated; the message says why."""


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def connect(kubeconfig: Path | None, context: str | None) -> tuple[Any, str]:
    """An API client and the namespace to use when none is given, as kubectl picks them: in a
    pod (no kubeconfig or context asked for), the pod's own; else the kubeconfig context's
    (``--context``, or the current one), ``default`` when the context names none."""
    try:
        from kubernetes import client, config
    except ImportError as err:
        raise RolloutControlError(
            "this command needs the Kubernetes client: pip install 'modeldeploy[cli]'"
        ) from err

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


def _api(kubeconfig: Path | None, context: str | None) -> tuple[Any, str, str]:
    """The CustomObjectsApi, the default namespace and the server, for one attempt per call: a
    server that does not answer is reported at once, not after retries."""
    api_client, default_namespace = connect(kubeconfig, context)  # first: says what is missing
    from kubernetes import client

    api_client.configuration.retries = 0
    return client.CustomObjectsApi(api_client), default_namespace, api_client.configuration.host


def _call(host: str, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call`` with the API's failures as one-line :class:`RolloutControlError`s."""
    from kubernetes.client.rest import ApiException

    try:
        return call(*args, **kwargs)
    except ApiException as err:
        if err.status == 404:
            raise RolloutControlError(f"{what} not found") from err
        raise RolloutControlError(f"{err.status} {err.reason}: {err.body}") from err
    except Exception as err:  # urllib3's MaxRetryError, a refused connection, a timeout
        raise RolloutControlError(_unreachable(host, err)) from err


def request(
    action: str,
    name: str,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None = None,
) -> dict[str, Any]:
    """Apply ``action``'s annotations (none for status); return the object as it is after.
    ``namespace`` None: the context's (:func:`connect`)."""
    api, default_namespace, host = _api(kubeconfig, context)
    namespace = namespace or default_namespace
    what = f"ModelDeployment {namespace}/{name}"
    patch = ANNOTATIONS[action]
    if patch:
        response = _call(
            host, what, api.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": patch}},
            _content_type="application/merge-patch+json", _preload_content=False,
            _request_timeout=30,
        )  # fmt: skip
    else:
        response = _call(
            host, what, api.get_namespaced_custom_object,
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False, _request_timeout=30,
        )  # fmt: skip
    body: dict[str, Any] = json.loads(response.data)
    return body


def list_deployments(
    namespace: str | None, all_namespaces: bool, kubeconfig: Path | None, context: str | None
) -> tuple[list[dict[str, Any]], str]:
    """Every ModelDeployment in ``namespace`` (None: the context's), or in every namespace;
    with the list's resourceVersion, for a watch to start from."""
    api, default_namespace, host = _api(kubeconfig, context)
    if all_namespaces:
        response = _call(
            host, "ModelDeployments", api.list_cluster_custom_object,
            GROUP, VERSION, PLURAL, _preload_content=False, _request_timeout=30,
        )  # fmt: skip
    else:
        response = _call(
            host, "ModelDeployments", api.list_namespaced_custom_object,
            GROUP, VERSION, namespace or default_namespace, PLURAL,
            _preload_content=False, _request_timeout=30,
        )  # fmt: skip
    body = json.loads(response.data)
    items: list[dict[str, Any]] = body.get("items") or []
    for item in items:  # a list's items carry no kind; -o yaml should show it
        item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        item.setdefault("kind", "ModelDeployment")
    return items, str((body.get("metadata") or {}).get("resourceVersion") or "")


def watch(
    namespace: str | None,
    all_namespaces: bool,
    kubeconfig: Path | None,
    context: str | None,
    name: str | None = None,
    resource_version: str = "",
    timeout: float | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event type, object)`` for each change after ``resource_version``, until ``timeout``
    seconds have passed (None: until interrupted); ``name`` narrows to one object. A watch the
    server ends early is started again from the last version seen."""
    from kubernetes import watch as kube_watch

    api, default_namespace, host = _api(kubeconfig, context)
    args: tuple[Any, ...] = (GROUP, VERSION, PLURAL)
    call = api.list_cluster_custom_object
    if not all_namespaces:
        args = (GROUP, VERSION, namespace or default_namespace, PLURAL)
        call = api.list_namespaced_custom_object
    selector = {"field_selector": f"metadata.name={name}"} if name else {}
    deadline = None if timeout is None else time.monotonic() + timeout
    version = resource_version
    while deadline is None or time.monotonic() < deadline:
        left = None if deadline is None else max(1, int(deadline - time.monotonic()))
        stream = kube_watch.Watch().stream(
            call, *args, resource_version=version, timeout_seconds=left or 300,
            allow_watch_bookmarks=False, **selector,
        )  # fmt: skip
        events = iter(stream)
        while True:
            event = _call(host, "ModelDeployments", next, events, None)
            if event is None:
                break
            obj = event["object"]
            if event["type"] == "ERROR":  # 410 Gone: start again from now
                version = ""
                break
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            yield str(event["type"]), obj


def _ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    return found


ENDED_BADLY = (RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED, RolloutPhase.FAILED)
FINISHED_PHASES = (RolloutPhase.PROMOTED, *ENDED_BADLY)
AT_A_STEP = (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED, RolloutPhase.INCONCLUSIVE)
"""Phases in which the rollout stands at one of its steps (a shadow has none)."""


def finished(body: dict[str, Any]) -> tuple[bool, bool]:
    """``(finished, healthy)`` as ``status --watch`` ends: finished when no rollout is in flight
    and the deployment is Ready (healthy), or when the rollout ended badly (not healthy). A paused
    or inconclusive rollout is waiting for a person, not finished."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    ready = _ready_condition(status)
    current = status.get("observedGeneration") in (None, generation)
    phase = (status.get("rollout") or {}).get("phase")
    if phase in ENDED_BADLY and current:
        return True, False
    if ready.get("status") == "True" and current and phase in (None, *FINISHED_PHASES):
        return True, True
    return False, False


def summary_row(body: dict[str, Any]) -> dict[str, str]:
    """The columns ``list`` shows, as the CRD's printer columns show them to kubectl."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    ready = _ready_condition(status)
    rollout = status.get("rollout") or {}
    steps = ((body.get("spec") or {}).get("rollout") or {}).get("steps") or []
    step = (
        f"{int(rollout.get('step') or 0) + 1}/{len(steps)}"
        if steps and rollout.get("phase") in AT_A_STEP
        else ""
    )
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "ready": str(ready.get("status") or ""),
        "reason": str(ready.get("reason") or ""),
        "phase": str(rollout.get("phase") or ""),
        "step": step,
        "traffic": str((status.get("traffic") or {}).get("split") or ""),
        "url": str(status.get("url") or ""),
    }


def describe_rows(body: dict[str, Any]) -> list[tuple[str, str]]:
    """What ``status`` shows, as (label, value) rows: revisions, phase and step, weights, the
    last analysis, commands not yet acted on, and the conditions."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    spec_steps = ((body.get("spec") or {}).get("rollout") or {}).get("steps") or []
    revisions = status.get("revisions") or {}
    rollout = status.get("rollout") or {}
    traffic = status.get("traffic") or {}
    annotations = meta.get("annotations") or {}
    rows = [
        ("stable", f"{revisions.get('stable', '-')}  {revisions.get('stableUri', '')}".rstrip())
    ]
    if revisions.get("canary"):
        rows.append(("canary", f"{revisions['canary']}  {revisions.get('canaryUri', '')}"))
    if revisions.get("failed"):
        rows.append(("failed", f"{revisions['failed']}  (no traffic until the spec changes)"))
    phase = rollout.get("phase") or "-"
    step = int(rollout.get("step") or 0)
    if (
        spec_steps
        and phase in (*AT_A_STEP, RolloutPhase.FAILED)
        and not shadow_pending(_typed(rollout))
    ):
        weight = spec_steps[min(step, len(spec_steps) - 1)].get("weight")
        rows.append(("phase", f"{phase}, step {step + 1}/{len(spec_steps)} (target {weight}%)"))
    else:
        rows.append(("phase", phase))
    rows.append(
        ("traffic", f"stable {traffic.get('stable', 100)}%, canary {traffic.get('canary', 0)}%")
    )
    kserve = traffic.get("kserveCanary")
    if kserve:
        rows.append(("kserve", f"spec.canary predictor {kserve.get('predictor')}: "
                     f"{kserve.get('trafficPercent', 0)}% as KServe reads it back, "
                     f"CanaryPredictorReady {kserve.get('ready', False)}"))  # fmt: skip
    gateway = traffic.get("gateway")
    if gateway:
        # Why a Promoting or RolledBack rollout still holds the pods it stopped sending to.
        rows.append(("gateway", f"every gateway serves route generation "
                     f"{gateway.get('generation')} since {gateway.get('since')} "
                     "(pods it no longer reaches stop after the scale-down delay)"))  # fmt: skip
    shadow = rollout.get("shadow")
    if shadow:
        rows.append(("shadow", shadow_text(shadow)))
        rows.extend(("evidence", uri) for uri in shadow.get("evidence") or [])
    analysis = rollout.get("analysis")
    if analysis:
        verdict = "passed" if analysis.get("passed") else "FAILED"
        rows.append(
            ("analysis", f"{verdict} at {analysis.get('at')}: {rollout.get('lastAnalysis')}")
        )
    if rollout.get("failure"):
        rows.append(("failure", str(rollout["failure"])))
    pending = [k for k in (naming.PROMOTE_ANNOTATION, naming.ABORT_ANNOTATION,
                           naming.RETRY_ANNOTATION) if k in annotations]  # fmt: skip
    if naming.PAUSE_ANNOTATION in annotations:
        pending.append(f"{naming.PAUSE_ANNOTATION}={annotations[naming.PAUSE_ANNOTATION]}")
    if pending:
        rows.append(("pending", f"{', '.join(pending)} (the operator acts on these)"))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("Ready", "RolloutProgressing", "Degraded"):
        c = conditions.get(kind)
        if c:
            rows.append((kind, f"{c.get('status')} {c.get('reason')}: {c.get('message', '')}"))
    return rows


def _typed(rollout: dict[str, Any]) -> RolloutStatus | None:
    """``status.rollout`` as the operator's model, or None when it has none or one this CLI's
    version does not know (the rows then show the stored values as they are)."""
    try:
        return RolloutStatus.model_validate(rollout) if rollout else None
    except ValidationError:
        return None


def shadow_text(shadow: dict[str, Any]) -> str:
    """One line for the shadow phase: where it is and its numbers."""
    where = (
        "passed"
        if shadow.get("done")
        else "mirroring"
        if shadow.get("active")
        else "off"
        if shadow.get("startedAt")
        else "waiting for the candidate"
    )
    text = f"{where}, {shadow.get('percent')}% of stable's requests to {shadow.get('candidate')}"
    if shadow.get("agreement") is not None:
        text += f"; agreement {shadow['agreement']:.4f} over {shadow.get('compared', 0):.0f}"
    if shadow.get("errors"):
        text += f", {shadow['errors']:.0f} errors"
    if shadow.get("dropped"):
        text += f", {shadow['dropped']:.0f} dropped"
    if shadow.get("maxAbsDiff") is not None:
        text += f", worst |Δ| {shadow['maxAbsDiff']:.3g}"
    return text


def plain_text(renderable: Any) -> str:
    """A rich table as plain text lines, never wrapped or cut for a narrow (or absent)
    terminal: tools read this output too."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=10_000, highlight=False, soft_wrap=True).print(renderable)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def describe(body: dict[str, Any]) -> str:
    """``status``'s text: the object's ``namespace/name``, then its rows aligned by rich."""
    from rich.table import Table

    meta = body.get("metadata") or {}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for label, value in describe_rows(body):
        grid.add_row(f"  {label}:", value)
    return f"{meta.get('namespace')}/{meta.get('name')}\n{plain_text(grid)}"
