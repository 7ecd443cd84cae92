"""A tenant's spec names the Prometheus the operator queries, and the PromQL it runs (issue 16,
item 2 and "Also"). The address could be a cloud metadata endpoint or an internal service, seen
from the operator's network position; a query could read another namespace's series into this
namespace's status. The operator queries only addresses on its allow-list, and only queries
confined to the deployment's own namespace, and refuses anything else before it creates
anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.metric_names import unconfined_selectors
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.reconcile import plan
from tests.security.plans import refused_before_anything
from tests.support.controlplane import REPO_ROOT
from tests.unit.test_controller import CONFIG, NOW, body_of, example, observed

METADATA = "http://169.254.169.254/latest/meta-data"


def with_analysis(**analysis: Any) -> dict[str, Any]:
    body = body_of(example())
    body["spec"].setdefault("rollout", {})["analysis"] = analysis
    return body


def ready_of(result: Any) -> dict[str, Any]:
    return {c["type"]: c for c in result.status.wire()["conditions"]}["Ready"]


def test_a_metadata_endpoint_as_prometheus_is_refused_before_anything_exists() -> None:
    config = OperatorConfig(prometheus_address="http://prometheus.monitoring:9090")
    result = plan(observed(with_analysis(prometheus={"address": METADATA})), config, NOW)
    ready = refused_before_anything(result)
    assert ready["reason"] == "PrometheusNotAllowed"
    assert ready["message"].startswith(
        f"spec.rollout.analysis.prometheus.address {METADATA} is not on the operator's "
        "allow-list (http://prometheus.monitoring:9090)"
    )


def test_addresses_on_the_allow_list_and_the_operators_own_are_queried() -> None:
    config = OperatorConfig(
        prometheus_address="http://prometheus.monitoring:9090",
        prometheus_allowed=("http://team-prom.ml:9090/",),
    )
    for address in ("http://team-prom.ml:9090", "http://prometheus.monitoring:9090/"):
        result = plan(observed(with_analysis(prometheus={"address": address})), config, NOW)
        assert result.create_job is not None, ready_of(result)
    # Read from the environment the chart sets.
    assert OperatorConfig.from_env(
        {"MODELDEPLOY_PROMETHEUS_ALLOWED": "http://a:9090, http://b:9090"}
    ).prometheus_allowed == ("http://a:9090", "http://b:9090")
    # No list and no default address: a spec address is refused.
    assert (
        ready_of(
            plan(observed(with_analysis(prometheus={"address": "http://a:9090"})), CONFIG, NOW)
        )["reason"]
        == "PrometheusNotAllowed"
    )


def test_a_query_reading_another_namespace_is_refused_naming_the_selector() -> None:
    stolen = {
        "name": "steal",
        "query": 'max(modeldeploy_input_max{namespace="payments"})',
        "max": 1e9,
    }
    result = plan(observed(with_analysis(queries=[stolen])), CONFIG, NOW)
    ready = refused_before_anything(result)
    assert ready["reason"] == "QueryNotConfined"
    assert ready["message"].startswith(
        "spec.rollout.analysis.queries[0].query selects modeldeploy_input_max without "
        'namespace="{{namespace}}"'
    )
    # Behind a proxy that enforces the namespace, the operator may allow it.
    allowing = OperatorConfig(unconfined_queries=True)
    assert plan(observed(with_analysis(queries=[stolen])), allowing, NOW).create_job is not None
    confined = {**stolen, "query": 'max(modeldeploy_input_max{namespace="{{namespace}}"})'}
    assert plan(observed(with_analysis(queries=[confined])), CONFIG, NOW).create_job is not None


@pytest.mark.parametrize(
    ("query", "unconfined"),
    [
        ('sum(rate(modeldeploy_requests_total{namespace="{{namespace}}"}[{{window}}]))', []),
        ("sum(rate(modeldeploy_requests_total[5m]))", ["modeldeploy_requests_total"]),
        ('{__name__=~"node_.*"}', ['{__name__=~""}']),
        ('kube_secret_info{namespace=~"{{namespace}}|kube-system"}', ["kube_secret_info"]),
        ('sum(a{namespace="{{namespace}}"}) / sum(b)', ["b"]),
        ('rate(a{namespace="{{namespace}}"}[5m] offset 1h) and on (pod) b{namespace="{{namespace}}"}', []),
        ("vector(1) * 1e3", []),
    ],
    ids=["confined", "bare", "name-regex", "regex-escape", "second-operand", "offset-and-on", "no-selector"],
)  # fmt: skip
def test_every_selector_must_carry_the_own_namespace_matcher(
    query: str, unconfined: list[str]
) -> None:
    assert unconfined_selectors(query) == unconfined


def test_every_examples_custom_queries_are_confined_to_their_namespace() -> None:
    checked = 0
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(Path(path).read_text()):
            for query in (((doc or {}).get("spec") or {}).get("rollout") or {}).get(
                "analysis", {}
            ).get("queries") or []:
                assert unconfined_selectors(query["query"]) == [], (path.name, query["name"])
                checked += 1
    assert checked >= 2
