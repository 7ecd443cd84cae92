"""The Gateway API HTTPRoute that splits traffic between stable and canary in Standard mode.

KServe's ``canaryTrafficPercent`` only works in Knative mode; in Standard (raw Deployment) mode
KServe ignores it. Its route (``<name>``, with Gateway API on) goes to stable's predictor alone,
even in KServe 0.20 with ``spec.canary``: there ``trafficPercent`` is recorded in
``status.canaryStatuses`` and sizes the canary's replicas, and the top-level HTTPRoute it writes
still has one backend (``createRawTopLevelHTTPRoute``). So this route, ``<name>-traffic``, sends
``weight`` percent of the requests for ``<name>.<namespace>.<domain>`` to the canary's predictor
Service and the rest to stable's, whichever way the canary runs:

- KServe >= 0.20: an entry of the InferenceService's ``spec.canary``, Service
  ``<name>-<slot>-predictor`` (``naming.canary_slot``);
- KServe 0.15-0.19: a second InferenceService ``<name>-canary``, Service
  ``<name>-canary-predictor``.

Weighted ``backendRefs`` are core Gateway API (v1): any conformant gateway carries them.

Pure: ModelDeployment + Services + weights → manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.controller import naming
from modeldeploy.controller.config import OperatorConfig

API_VERSION = "gateway.networking.k8s.io/v1"
PLURAL = "httproutes"
SERVICE_PORT = 80


def route_host(deployment: ModelDeployment, config: OperatorConfig) -> str:
    """The host the route answers on."""
    namespace = deployment.metadata.namespace or "default"
    return f"{deployment.metadata.name}.{namespace}.{config.route_domain}"


@dataclass(frozen=True)
class Backends:
    """The predictor Services the route splits between."""

    stable: str
    canary: str

    @classmethod
    def separate(cls, deployment: str) -> Backends:
        """KServe 0.15-0.19: the canary is its own InferenceService ``<name>-canary``."""
        return cls(naming.predictor_service(deployment),
                   naming.predictor_service(naming.canary_name(deployment)))  # fmt: skip

    @classmethod
    def slots(cls, deployment: str, stable_slot: str, canary_slot: str) -> Backends:
        """KServe >= 0.20: stable and canary are predictors of the one InferenceService."""
        return cls(naming.predictor_service(deployment, stable_slot),
                   naming.predictor_service(deployment, canary_slot))  # fmt: skip


def build_http_route(
    deployment: ModelDeployment,
    uid: str,
    config: OperatorConfig,
    canary_weight: int,
    with_canary: bool,
    backends: Backends | None = None,
) -> dict[str, Any]:
    """Route ``canary_weight`` percent to the canary's predictor, the rest to stable.

    ``with_canary`` False leaves the canary backend out entirely (no canary exists), so the
    gateway never resolves a Service that is not there.
    """
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    services = backends or Backends.separate(name)
    gateway_namespace, gateway_name = config.gateway.split("/")
    refs = [
        {
            "group": "",
            "kind": "Service",
            "name": services.stable,
            "port": SERVICE_PORT,
            "weight": 100 - canary_weight if with_canary else 100,
        }
    ]
    if with_canary:
        refs.append(
            {
                "group": "",
                "kind": "Service",
                "name": services.canary,
                "port": SERVICE_PORT,
                "weight": canary_weight,
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": naming.route_name(name),
            "namespace": namespace,
            "labels": naming.labels(name),
            "ownerReferences": [naming.owner_reference(name, uid)],
        },
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "namespace": gateway_namespace,
                    "name": gateway_name,
                }
            ],
            "hostnames": [route_host(deployment, config)],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": refs,
                }
            ],
        },
    }


def route_weights(route: dict[str, Any] | None, backends: Backends) -> tuple[int, int] | None:
    """(stable, canary) percent as the route stands, or None when there is no route."""
    if route is None:
        return None
    rules = (route.get("spec") or {}).get("rules") or []
    weights = {
        ref.get("name"): int(ref.get("weight", 1))
        for rule in rules[:1]
        for ref in rule.get("backendRefs") or []
    }
    stable = weights.get(backends.stable, 0)
    canary = weights.get(backends.canary, 0)
    total = stable + canary
    if total == 0:
        return 0, 0
    return round(100 * stable / total), round(100 * canary / total)


def accepted_generation(route: dict[str, Any] | None) -> int | None:
    """The route's generation once every gateway it is attached to has accepted it: each
    parent's ``Accepted`` condition True at that generation (Gateway API's
    ``observedGeneration``, as Argo CD's HTTPRoute health check reads it); None while one has
    not, or when there is no route. The API server holds a new weight at once; a gateway serves
    it only after it has processed the route, so a pod the old weights still reach must not be
    stopped before. A route no gateway reports on (no ``status.parents``) is taken as the API
    server holds it."""
    if route is None:
        return None
    generation = int((route.get("metadata") or {}).get("generation") or 0)
    for parent in (route.get("status") or {}).get("parents") or []:
        accepted: dict[str, Any] = next(
            (c for c in parent.get("conditions") or [] if c.get("type") == "Accepted"), {}
        )
        if accepted.get("status") != "True" or accepted.get("observedGeneration") != generation:
            return None
    return generation
