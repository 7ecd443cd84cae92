"""Read what KServe and the gateway report back into a ``rollout.Serving``.

Pure, like ``job_state``: the rollout trusts only what is read back (the traffic KServe
reports, the weights the HTTPRoute holds), never what it last asked for.
"""

from __future__ import annotations

import re
from typing import Any

from modeldeploy.api.status import KServeCanary
from modeldeploy.controller import naming
from modeldeploy.controller.rollout import FAILED_REVISION_REASONS, Serving
from modeldeploy.controller.route import Backends, accepted_generation, route_weights


def storage_uri(isvc: dict[str, Any]) -> str | None:
    """The stable predictor's ``storageUri`` of an InferenceService."""
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    uri = model.get("storageUri")
    return str(uri) if uri else None


def _current(isvc: dict[str, Any]) -> bool:
    """Whether the status describes the spec as it is now."""
    status = isvc.get("status") or {}
    return bool(status.get("observedGeneration") == isvc.get("metadata", {}).get("generation"))


def settled(isvc: dict[str, Any]) -> bool:
    """Whether KServe has reported on the InferenceService's current spec, and it is Ready."""
    return _current(isvc) and isvc_readiness(isvc)[0]


def isvc_readiness(isvc: dict[str, Any] | None) -> tuple[bool, str, str]:
    """(ready, reason, message) of an InferenceService, from KServe's Ready condition: the one
    place its readiness is read."""
    if isvc is None:
        return False, "InferenceServiceMissing", "no InferenceService yet"
    ready = condition(isvc, "Ready")
    if not ready:
        return False, "InferenceServiceNotReady", "KServe has not reported readiness yet"
    if ready.get("status") == "True":
        url = (isvc.get("status") or {}).get("url", "?")
        return True, "InferenceServiceReady", f"serving at {url}"
    return (
        False,
        condition_reason(ready.get("reason"), "InferenceServiceNotReady"),
        str(ready.get("message") or "the InferenceService is not ready"),
    )


def condition_reason(text: Any, default: str) -> str:
    """KServe's reason as a Kubernetes condition reason (CamelCase, no spaces): KServe 0.20
    writes e.g. "Predictor Deployment NotReady", which the ModelDeployment's CRD refuses."""
    words = re.findall(r"[A-Za-z0-9_]+", str(text or ""))
    joined = "".join(w[:1].upper() + w[1:] for w in words)[:1024]
    return joined if joined[:1].isalpha() else default


def condition(isvc: dict[str, Any], kind: str) -> dict[str, Any]:
    """KServe's condition ``kind`` of an InferenceService; {} when it has none."""
    found: dict[str, Any] = next(
        (c for c in (isvc.get("status") or {}).get("conditions") or [] if c.get("type") == kind),
        {},
    )
    return found


def _failure(isvc: dict[str, Any], kind: str) -> str | None:
    found = condition(isvc, kind)
    if found.get("status") == "False" and found.get("reason") in FAILED_REVISION_REASONS:
        return f"{found['reason']}: {found.get('message', '')}"[:2000]
    return None


def knative_serving(isvc: dict[str, Any] | None, canary_uri: str | None) -> Serving:
    """One InferenceService; the canary is its latest revision when that serves ``canary_uri``."""
    if isvc is None:
        return Serving(weights=(100, 0))
    status = isvc.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    uri = storage_uri(isvc)
    current = _current(isvc)
    latest = predictor.get("latestCreatedRevision")
    latest_ready = current and bool(latest) and predictor.get("latestReadyRevision") == latest
    latest_ready_uri = uri if latest_ready else None
    traffic = predictor.get("traffic") or []
    latest_percent = sum(int(t.get("percent") or 0) for t in traffic if t.get("latestRevision"))
    canary_ready = canary_uri is not None and latest_ready_uri == canary_uri
    weights = (100 - latest_percent, latest_percent) if canary_ready else (100, 0)
    failed = None
    if current and canary_uri is not None and uri == canary_uri and not latest_ready:
        failed = _failure(isvc, "LatestDeploymentReady")
    canary_url = next((t.get("url") for t in traffic if t.get("tag") == "latest"), None)
    return Serving(
        weights=weights,
        canary_ready=canary_ready,
        canary_failed=failed,
        canary_url=canary_url,
        stable_settled_on=latest_ready_uri if latest_percent == 100 else None,
        latest_ready_uri=latest_ready_uri,
        exists=True,
    )


def _ready_on(isvc: dict[str, Any] | None, uri: str | None) -> bool:
    return (
        isvc is not None
        and uri is not None
        and _current(isvc)
        and storage_uri(isvc) == uri
        and isvc_readiness(isvc)[0]
    )


def rolled_out(deployment: dict[str, Any] | None, revision: str | None) -> bool:
    """Whether KServe's predictor Deployment has finished rolling out pods of ``revision``
    (``kubectl rollout status``: every replica updated and available, for the current
    generation, with the pod template labelled with that revision). An InferenceService stays
    Ready through a rolling update, so its Ready alone cannot say the new pods serve."""
    if deployment is None or revision is None:
        return False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    replicas = int(spec.get("replicas", 1))
    return (
        labels.get(naming.REVISION_LABEL) == revision
        and int(status.get("observedGeneration") or 0)
        >= int(deployment.get("metadata", {}).get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) >= replicas
        and int(status.get("availableReplicas") or 0) >= replicas
    )


def standard_serving(
    stable: dict[str, Any] | None,
    canary: dict[str, Any] | None,
    route: dict[str, Any] | None,
    canary_uri: str | None,
    deployment: str,
    predictor: dict[str, Any] | None = None,
    revision_of: dict[str, str] | None = None,
) -> Serving:
    """Two InferenceServices and the HTTPRoute between them; ``predictor`` is the stable
    InferenceService's Deployment, and ``revision_of`` maps artifact URIs to revisions."""
    if stable is None:
        return Serving(weights=(100, 0))
    failed = None
    if canary is not None and _current(canary) and storage_uri(canary) == canary_uri:
        failed = _failure(canary, "Ready")
    stable_uri = storage_uri(stable)
    settled = _ready_on(stable, stable_uri) and rolled_out(
        predictor, (revision_of or {}).get(stable_uri or "")
    )
    return Serving(
        weights=route_weights(route, Backends.separate(deployment)) or (100, 0),
        canary_ready=_ready_on(canary, canary_uri),
        canary_failed=failed,
        canary_url=((canary or {}).get("status") or {}).get("url"),
        stable_settled_on=stable_uri if settled else None,
        exists=True,
        accepted_route=accepted_generation(route) if canary is not None else None,
    )


def predictor_slot(isvc: dict[str, Any] | None) -> str:
    """Stable's ``predictor.name`` on a KServe >= 0.20 InferenceService ("" unnamed)."""
    return str((((isvc or {}).get("spec") or {}).get("predictor") or {}).get("name") or "")


def canary_entry(isvc: dict[str, Any] | None) -> dict[str, Any] | None:
    """``spec.canary[0]`` of an InferenceService, when it has one."""
    entries = ((isvc or {}).get("spec") or {}).get("canary") or []
    return dict(entries[0]) if entries else None


def canary_slot_of(isvc: dict[str, Any] | None) -> str:
    """The canary's ``predictor.name``: its entry's, or the slot a new one would take."""
    entry = canary_entry(isvc)
    named = ((entry or {}).get("predictor") or {}).get("name")
    return str(named or naming.canary_slot(predictor_slot(isvc)))


def _entry_uri(entry: dict[str, Any]) -> str | None:
    uri = (((entry.get("predictor") or {}).get("model")) or {}).get("storageUri")
    return str(uri) if uri else None


def canary_status(isvc: dict[str, Any], slot: str) -> dict[str, Any]:
    """KServe's ``status.canaryStatuses`` entry of the canary ``slot``; {} before it reports."""
    found: dict[str, Any] = next(
        (s for s in (isvc.get("status") or {}).get("canaryStatuses") or []
         if s.get("name") == slot), {},
    )  # fmt: skip
    return found


def slotted_serving(
    isvc: dict[str, Any] | None,
    route: dict[str, Any] | None,
    canary: tuple[str, str] | None,
    deployment: str,
    namespace: str,
    predictors: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None),
    revision_of: dict[str, str] | None = None,
    separate_canary: bool = False,
) -> Serving:
    """KServe >= 0.20: one InferenceService, the canary its ``spec.canary[0]``, and our route
    between their Services. ``canary`` is the candidate (uri, revision); ``predictors`` are
    KServe's Deployments of stable (read while promoting) and of the canary (during a rollout);
    ``separate_canary``: a ``<name>-canary`` left by an operator that ran before KServe 0.20
    exists, whose pods, like an entry's, stop only after the scale-down delay.

    KServe's ``status.observedGeneration`` is no help in Standard mode: it copies the stable
    Deployment's, so a spec.canary change never moves it. The canary is ready when KServe
    reports the entry ready *and* its Deployment has rolled out pods of the candidate's
    revision (``rolled_out``): ``canaryStatuses[].ready`` only says some pod is available,
    which an old pod of a reused slot also is. Its weight reads back once the route and
    KServe's ``trafficPercent`` agree (a share KServe has not caught up with is not a reason to
    think the canary unready, which would take its weight away). Its URL is its own
    predictor Service, which the analysis and stable's shadow mirror reach in-cluster."""
    if isvc is None:
        return Serving(weights=(100, 0))
    stable_slot = predictor_slot(isvc)
    entry = canary_entry(isvc)
    slot = canary_slot_of(isvc)
    backends = Backends.slots(deployment, stable_slot, slot)
    reported = canary_status(isvc, slot) if entry is not None else {}
    canary_ready = (
        entry is not None
        and canary is not None
        and _entry_uri(entry) == canary[0]
        and reported.get("ready") is True
        and rolled_out(predictors[1], canary[1])
    )
    weights = route_weights(route, backends) or (100, 0)
    if entry is not None and reported.get("trafficPercent") != weights[1]:
        # KServe has not read the share back yet: the lagging number, so no step's clock
        # starts before both the route and KServe carry it.
        lag = int(reported.get("trafficPercent") or 0)
        weights = (100 - lag, lag)
    stable_uri = storage_uri(isvc)
    settled = (
        entry is None
        and isvc_readiness(isvc)[0]
        and rolled_out(predictors[0], (revision_of or {}).get(stable_uri or ""))
    )
    return Serving(
        weights=weights,
        canary_ready=canary_ready,
        canary_url=f"http://{backends.canary}.{namespace}.svc.cluster.local" if entry else None,
        stable_settled_on=stable_uri if settled else None,
        exists=True,
        accepted_route=accepted_generation(route) if entry or separate_canary else None,
        kserve_canary=KServeCanary(
            predictor=slot,
            traffic_percent=int(reported.get("trafficPercent") or 0),
            ready=condition(isvc, "CanaryPredictorReady").get("status") == "True",
        )
        if entry is not None
        else None,
    )
