"""Which Prometheus a tenant's spec may make the operator query, and what it may ask.

The operator queries from inside the cluster with its own network position. A spec's address
could name a cloud metadata endpoint or an internal service; a custom query could read another
namespace's series and copy the values into this namespace's status. So a spec's address must
be on the operator's allow-list (the operator's own default address always is), and every
selector of a custom query must carry ``namespace="{{namespace}}"``, unless the operator's
config allows unconfined queries (as behind prom-label-proxy, which enforces the namespace
itself).
"""

from __future__ import annotations

from modeldeploy.api.metric_names import OWN_NAMESPACE, unconfined_selectors
from modeldeploy.api.modeldeployment import ModelDeploymentSpec
from modeldeploy.controller.config import OperatorConfig


def _normal(address: str) -> str:
    return address.rstrip("/")


def allowed_addresses(config: OperatorConfig) -> list[str]:
    addresses = [*config.prometheus_allowed]
    if config.prometheus_address:
        addresses.append(config.prometheus_address)
    return sorted({_normal(a) for a in addresses})


def address_refusal(spec: ModelDeploymentSpec, config: OperatorConfig) -> str | None:
    """Why the spec's Prometheus address may not be queried, or None."""
    source = spec.rollout.analysis.prometheus
    if source is None:
        return None
    allowed = allowed_addresses(config)
    if _normal(source.address) in allowed:
        return None
    return (
        f"spec.rollout.analysis.prometheus.address {source.address} is not on the operator's "
        f"allow-list ({', '.join(allowed) or 'empty'}); the operator queries only the Prometheus "
        "servers its prometheusAllowed setting names"
    )


def query_refusal(spec: ModelDeploymentSpec, config: OperatorConfig) -> str | None:
    """Why a custom query could read beyond the deployment's namespace, or None."""
    if config.unconfined_queries:
        return None
    problems = [
        f"spec.rollout.analysis.queries[{i}].query selects {', '.join(found)} without "
        f"{OWN_NAMESPACE}"
        for i, query in enumerate(spec.rollout.analysis.queries or [])
        if (found := unconfined_selectors(query.query))
    ]
    if not problems:
        return None
    return (
        "; ".join(problems) + ": a custom query may read only its own namespace's series "
        "(or the operator must allow unconfined queries, e.g. behind prom-label-proxy)"
    )
