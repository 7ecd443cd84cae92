"""Which metrics measure a canary, by the runtime that serves it (docs/canary.md#metrics).

The analysis's built-in checks (request count, error rate, p99) must read metrics the serving
runtime really exports; a query on a metric nobody exports returns nothing, and nothing would
pass. Each source names the series whose absence means the canary is not scraped, and the PromQL
for requests, errors and p99 over the step's window. Client errors (4xx, INVALID_ARGUMENT) are
no canary errors: a client sending malformed requests says nothing about the canary. What does
say something is a canary that refuses, as the client's fault, requests stable accepts (a changed
input contract): the analysis compares the two revisions' client-error rates on the same traffic.

- our runtime (``modeldeploy-onnx``), in either mode: ``modeldeploy_requests_total{outcome}``
  (``success``, ``error``, and ``invalid`` for the client's fault) and the
  ``modeldeploy_request_latency_seconds`` histogram;
- Triton (``kserve-tritonserver``): ``nv_inference_request_success`` and
  ``nv_inference_request_failure`` (requests Triton refuses before they reach the model, such as
  malformed input, are in neither; cancellations by the client are left out). Triton exports no
  latency histogram: in Knative mode the p99 comes from the queue-proxy, and in Standard mode
  latency thresholds are refused at admission;
- any other runtime in Knative mode: the queue-proxy's ``revision_app_request_count`` by
  ``response_code_class`` and its ``revision_app_request_latencies`` histogram (milliseconds).

Every series is selected by the pod labels docs/canary.md#labels relabels onto the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modeldeploy.api.serving import DEFAULT_RUNTIME, TRITON_RUNTIME
from modeldeploy.controller.prometheus_client import promql_string


@dataclass(frozen=True)
class MetricSource:
    """How one runtime's canary is counted; ``{sel}`` and ``{window}`` are filled in."""

    name: str
    series: str
    """The metric that exists for every scraped pod of this runtime, traffic or not."""
    requests: str
    """Every request the runtime answered, client errors included: the evidence."""
    served: str
    """Requests that were the runtime's to answer: client errors left out."""
    errors: str
    """Requests the runtime failed (5xx, INTERNAL): counted against maxErrorRate."""
    client_errors: str | None
    """Requests refused as the client's fault (4xx, INVALID_ARGUMENT), where counted."""
    p99_ms: str | None


def _counted(
    name: str, metric: str, label: str, served: str, error: str, client: str, p99_ms: str
) -> MetricSource:
    """A source whose one request counter tells outcomes apart by ``label``: ``served`` and
    ``error`` match the runtime's own answers and failures, ``client`` the client's faults."""

    def count(matcher: str = "") -> str:
        return f"sum(increase({metric}{{{{{{sel}}{matcher}}}}}[{{window}}]))"

    return MetricSource(
        name=name,
        series=metric,
        requests=count(),
        served=count(f",{label}{served}"),
        errors=count(f",{label}{error}"),
        client_errors=count(f",{label}{client}"),
        p99_ms=p99_ms,
    )


OURS = _counted(
    "the modeldeploy runtime",
    "modeldeploy_requests_total",
    "outcome",
    served='=~"success|error|overloaded|timeout"',
    # A canary that sheds load or misses deadlines is failing its users as surely as one
    # that errors.
    error='=~"error|overloaded|timeout"',
    client='="invalid"',
    p99_ms="1000 * histogram_quantile(0.99, sum by (le) "
    "(rate(modeldeploy_request_latency_seconds_bucket{{{sel}}}[{window}])))",
)
_TRITON_REQUESTS = (
    "sum(increase(nv_inference_request_success{{{sel}}}[{window}])) + "
    # A failure series may not exist yet; "or vector(0)" keeps the sum defined.
    '(sum(increase(nv_inference_request_failure{{{sel},reason!="CANCELED"}}[{window}])) '
    "or vector(0))"
)
TRITON = MetricSource(
    name="Triton",
    series="nv_inference_request_success",
    requests=_TRITON_REQUESTS,
    served=_TRITON_REQUESTS,
    errors='sum(increase(nv_inference_request_failure{{{sel},reason!="CANCELED"}}[{window}]))',
    client_errors=None,
    p99_ms=None,
)
QUEUE_PROXY = _counted(
    "Knative's queue-proxy",
    "revision_app_request_count",
    "response_code_class",
    served='!="4xx"',
    error='="5xx"',
    client='="4xx"',
    p99_ms="histogram_quantile(0.99, sum by (le) "
    "(rate(revision_app_request_latencies_bucket{{{sel}}}[{window}])))",
)


TRITON_IN_KNATIVE = replace(
    TRITON, name="Triton (p99 from Knative's queue-proxy)", p99_ms=QUEUE_PROXY.p99_ms
)


def for_runtime(runtime: str, knative: bool) -> MetricSource | None:
    """The source that measures ``runtime``: its own metrics where we know them, Knative's
    queue-proxy for the rest (and for Triton's latency, which Triton does not export as a
    histogram); None where nothing does, and admission refuses thresholds there."""
    if runtime == DEFAULT_RUNTIME:
        return OURS
    if runtime == TRITON_RUNTIME:
        return TRITON_IN_KNATIVE if knative else TRITON
    return QUEUE_PROXY if knative else None


def selector(namespace: str, deployment: str, revision: str) -> str:
    """The label matchers of one revision's pods, each value escaped as a PromQL string."""
    return (
        f'namespace="{promql_string(namespace)}",'
        f'modeldeploy_deployment="{promql_string(deployment)}",'
        f'modeldeploy_revision="{promql_string(revision)}"'
    )


def series_query(source: MetricSource, sel: str) -> str:
    """How many series of the source's always-present metric the canary has."""
    return f"count({source.series}{{{sel}}})"
