"""The Gateway API HTTPRoute that splits traffic between stable and canary in Standard mode.

KServe's ``canaryTrafficPercent`` only works in Knative mode; in Standard (raw Deployment) mode
KServe ignores it. There the canary runs as its own InferenceService (``<name>-canary``) and this
route sends ``weight`` percent of the requests for ``<name>.<namespace>.<domain>`` to its
predictor Service and the rest to the stable one. Weighted ``backendRefs`` are core Gateway API
(v1), so this works with every KServe release from 0.15 and any conformant gateway, not only
with KServe 0.20's ``spec.canary``.

Pure: ModelDeployment + weights → manifest.
"""

from __future__ import annotations

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


def build_http_route(
    deployment: ModelDeployment,
    uid: str,
    config: OperatorConfig,
    canary_weight: int,
    with_canary: bool,
) -> dict[str, Any]:
    """Route ``canary_weight`` percent to the canary's predictor, the rest to stable.

    ``with_canary`` False leaves the canary backend out entirely (no canary InferenceService
    exists), so the gateway never resolves a Service that is not there.
    """
    name = deployment.metadata.name
    namespace = deployment.metadata.namespace or "default"
    gateway_namespace, gateway_name = config.gateway.split("/")
    backends = [
        {
            "group": "",
            "kind": "Service",
            "name": naming.predictor_service(name),
            "port": SERVICE_PORT,
            "weight": 100 - canary_weight if with_canary else 100,
        }
    ]
    if with_canary:
        backends.append(
            {
                "group": "",
                "kind": "Service",
                "name": naming.predictor_service(naming.canary_name(name)),
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
                    "backendRefs": backends,
                }
            ],
        },
    }


def route_weights(route: dict[str, Any] | None, deployment: str) -> tuple[int, int] | None:
    """(stable, canary) percent as the route stands, or None when there is no route."""
    if route is None:
        return None
    rules = (route.get("spec") or {}).get("rules") or []
    weights = {
        ref.get("name"): int(ref.get("weight", 1))
        for rule in rules[:1]
        for ref in rule.get("backendRefs") or []
    }
    stable = weights.get(naming.predictor_service(deployment), 0)
    canary = weights.get(naming.predictor_service(naming.canary_name(deployment)), 0)
    total = stable + canary
    if total == 0:
        return 0, 0
    return round(100 * stable / total), round(100 * canary / total)
