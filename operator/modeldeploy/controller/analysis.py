"""One analysis run of a canary step or a shadow phase: live golden parity, Prometheus metrics.

This is the rollout's only I/O besides the API server, kept apart from the pure ``rollout``
module. All checks run every time; the result carries every number measured and one line per
failed check, and ``rollout.decide`` turns it into the next step or a rollback.

- **Readiness** is not a check: a run is only asked for a ready canary (``rollout.analysis_due``).
  Our runtime turns ready only after its start-up self-test on the golden samples passed.
- **Live golden parity**: the artifact's golden inputs, read from the artifact store (plain
  arrays, never unpickled), are sent to the canary's own URL with ``tritonclient`` and the
  answers compared with the stored outputs within the tolerance staging recorded. This checks
  the whole serving path as clients use it (router, protocol, batching, hardware), not only the
  graph.
- **Prometheus**: the canary's error rate (every outcome but success) and p99 latency over the
  step so far, from our runtime's ``modeldeploy_requests_total`` and
  ``modeldeploy_request_latency_seconds``, selected by the pods' ``modeldeploy_revision`` label;
  optionally p99 relative to stable, and custom PromQL with thresholds. No traffic is not a
  failure (there is nothing to judge), and the numbers say so.
"""

from __future__ import annotations

import io
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from modeldeploy.api.metric_names import metric_names
from modeldeploy.api.rollout import DEFAULT_MAX_ERROR_RATE, Analysis
from modeldeploy.artifacts.golden import GOLDEN_MAX_BYTES, agree, golden_arrays
from modeldeploy.artifacts.manifest import MANIFEST, parse_manifest
from modeldeploy.artifacts.store import open_store
from modeldeploy.controller import metric_sources
from modeldeploy.controller.metric_sources import MetricSource
from modeldeploy.controller.prometheus_client import PrometheusClient, promql_string
from modeldeploy.controller.rollout import AnalysisResult, ShadowResult, Target
from modeldeploy.controller.shadow_evidence import collect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Golden:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    atol: float
    rtol: float


def load_golden(store_uri: str, key: str, model: str) -> Golden | None:
    """The golden samples of artifact ``key``; None when the artifact has none."""
    store = open_store(store_uri)
    manifest_bytes = store.read(key, f"{model}/{MANIFEST}")
    if manifest_bytes is None:
        raise LookupError(f"artifact {key} has no {model}/{MANIFEST} in {store_uri}")
    spec = parse_manifest(manifest_bytes, f"artifact {key}: {MANIFEST}").golden
    data = store.read(key, f"{model}/{spec.file}", GOLDEN_MAX_BYTES)
    if data is None or not spec.count:
        return None
    inputs, outputs = golden_arrays(io.BytesIO(data))
    if not inputs or not outputs:
        return None
    return Golden(inputs, outputs, spec.atol, spec.rtol)


ANSWER_MAX_BYTES = 4 * GOLDEN_MAX_BYTES
"""Most bytes read of a canary's answer to the golden request: the golden outputs are at most
GOLDEN_MAX_BYTES, and an honest answer (binary, as asked) is their size plus a JSON header."""


def live_parity(url: str, model: str, golden: Golden, timeout: float) -> float:
    """Send the golden inputs to ``url`` (the v2 binary extension, built and parsed by
    tritonclient); the largest |served - stored|. The answer is read with a byte cap, so a
    canary (a tenant's model) cannot make the shared operator read without end. Raises
    ValueError with the numbers when any element is outside the tolerance."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in golden.inputs.items():
        item = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array, binary_data=True)
        inputs.append(item)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in golden.outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v2/models/{model}/infer", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            data = answer.read(ANSWER_MAX_BYTES + 1)
            header_length = answer.headers.get("Inference-Header-Content-Length")
    except urllib.error.HTTPError as err:  # the canary's own words, cut short, never whole
        raise ValueError(f"the canary answered HTTP {err.code} to the golden request") from err
    if len(data) > ANSWER_MAX_BYTES:
        raise ValueError(f"the canary's answer is over {ANSWER_MAX_BYTES} bytes; not read")
    result = httpclient.InferenceServerClient.parse_response_body(
        data, header_length=int(header_length) if header_length else None
    )
    served = {name: result.as_numpy(name) for name in golden.outputs}
    agreement = agree(
        {k: v for k, v in served.items() if v is not None},
        golden.outputs,
        golden.atol,
        golden.rtol,
        of="golden",
    )
    if agreement.failures:
        raise ValueError("; ".join(agreement.failures))
    return agreement.worst


def builtin_queries(source: MetricSource, target: Target) -> dict[str, str]:
    """The PromQL the analysis runs for ``source``, by what it measures."""
    window = f"{target.window_seconds}s"
    canary = metric_sources.selector(target.namespace, target.deployment, target.canary)
    stable = metric_sources.selector(target.namespace, target.deployment, target.stable)
    queries = {
        "series": metric_sources.series_query(source, canary),
        "requests": source.requests.format(sel=canary, window=window),
        "served": source.served.format(sel=canary, window=window),
        "errors": source.errors.format(sel=canary, window=window),
    }
    if source.client_errors is not None:
        queries["client_errors"] = source.client_errors.format(sel=canary, window=window)
        queries["stable_requests"] = source.requests.format(sel=stable, window=window)
        queries["stable_client_errors"] = source.client_errors.format(sel=stable, window=window)
    if source.p99_ms is not None:
        queries["p99"] = source.p99_ms.format(sel=canary, window=window)
        queries["stable_p99"] = source.p99_ms.format(sel=stable, window=window)
    return queries


def custom_query(query: str, target: Target) -> str:
    return (
        query.replace("{{canary}}", promql_string(target.canary))
        .replace("{{stable}}", promql_string(target.stable))
        .replace("{{namespace}}", promql_string(target.namespace))
        .replace("{{deployment}}", promql_string(target.deployment))
        .replace("{{window}}", f"{target.window_seconds}s")
    )


def missing_metrics(prometheus: PrometheusClient, query: str, timeout: float) -> list[str]:
    """The metric names in ``query`` that have no series at all in Prometheus."""
    missing = []
    for name in metric_names(query):
        if prometheus.value(f'count({{__name__="{promql_string(name)}"}})', timeout) is None:
            missing.append(name)
    return missing


@dataclass
class _Findings:
    """What one run found: failures roll back, inconclusive findings pause, numbers report."""

    failures: list[str] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)
    numbers: dict[str, float | None] = field(default_factory=dict)


def _builtin_checks(
    spec: Analysis, target: Target, prometheus: PrometheusClient, timeout: float, found: _Findings
) -> None:
    """Requests, error rate and latency from the runtime's own metrics, once there is evidence."""
    source = metric_sources.for_runtime(target.runtime, target.knative)
    if source is None:  # admission refused every threshold that would need one
        return
    queries = builtin_queries(source, target)
    canary = metric_sources.selector(target.namespace, target.deployment, target.canary)
    if not prometheus.value(queries["series"], timeout):
        found.inconclusive.append(
            f"no series for {source.series}{{{canary}}} in Prometheus at {prometheus}: is "
            f"{source.name} scraped? see docs/canary.md#labels"
        )
        return
    requests = prometheus.value(queries["requests"], timeout) or 0.0
    found.numbers["requests"] = requests
    if requests < spec.min_requests:
        found.inconclusive.append(
            f"{requests:.0f} canary requests in the last {target.window_seconds}s, fewer than "
            f"minRequests {spec.min_requests}: is traffic reaching the canary? "
            "see docs/canary.md#urls"
        )
        return
    max_rate = DEFAULT_MAX_ERROR_RATE if spec.max_error_rate is None else spec.max_error_rate
    served = prometheus.value(queries["served"], timeout) or 0.0
    errors = prometheus.value(queries["errors"], timeout) or 0.0
    rate = errors / served if served else 0.0
    found.numbers["error_rate"] = rate
    if rate > max_rate:
        found.failures.append(f"error rate {rate:.4f} > max {max_rate:g}")
    if "client_errors" in queries:
        _client_error_check(prometheus, queries, requests, max_rate, timeout, found)
    latency_judged = spec.max_p99_latency_ms is not None or spec.max_latency_ratio is not None
    if "p99" not in queries:
        return
    p99 = prometheus.value(queries["p99"], timeout)
    found.numbers["p99"] = p99
    if p99 is None:
        if latency_judged:  # a threshold nothing measured must not pass
            found.inconclusive.append(f"no p99 latency for the canary from {source.name}")
        return
    if spec.max_p99_latency_ms is not None and p99 > spec.max_p99_latency_ms:
        found.failures.append(f"p99 latency {p99:.1f} ms > max {spec.max_p99_latency_ms:g} ms")
    if spec.max_latency_ratio is not None:
        stable_p99 = prometheus.value(queries["stable_p99"], timeout)
        found.numbers["stable_p99"] = stable_p99
        if stable_p99 and p99 / stable_p99 > spec.max_latency_ratio:
            found.failures.append(
                f"p99 latency {p99:.1f} ms is {p99 / stable_p99:.2f}x stable's "
                f"{stable_p99:.1f} ms > max {spec.max_latency_ratio:g}x"
            )


def _client_error_check(
    prometheus: PrometheusClient,
    queries: dict[str, str],
    requests: float,
    max_rate: float,
    timeout: float,
    found: _Findings,
) -> None:
    """A client's malformed requests are no canary errors, but a canary that refuses, as the
    client's fault, what stable accepts on the same traffic has changed its input contract."""
    canary = (prometheus.value(queries["client_errors"], timeout) or 0.0) / requests
    stable_requests = prometheus.value(queries["stable_requests"], timeout) or 0.0
    stable_errors = prometheus.value(queries["stable_client_errors"], timeout) or 0.0
    stable = stable_errors / stable_requests if stable_requests else 0.0
    found.numbers["client_error_rate"] = canary
    found.numbers["stable_client_error_rate"] = stable
    # Two samples of one traffic mix differ by chance: allow three standard errors of the
    # difference (pooled binomial) on top of maxErrorRate, so only a real gap fails.
    pooled = (canary * requests + stable_errors) / (requests + stable_requests)
    noise = 3 * math.sqrt(pooled * (1 - pooled) * (1 / requests + 1 / max(stable_requests, 1)))
    if canary - stable > max_rate + noise:
        found.failures.append(
            f"client errors: the canary refuses {canary:.1%} of its requests as the client's "
            f"fault, stable {stable:.1%}; more than maxErrorRate {max_rate:g} + {noise:.3f} "
            "(chance) apart: a changed input contract?"
        )


def prediction_counts(
    prometheus: PrometheusClient, target: Target, revision: str, timeout: float
) -> dict[str, float]:
    """Answers by top-1 class of one revision over the step's window."""
    sel = metric_sources.selector(target.namespace, target.deployment, revision)
    query = (
        f"sum by (class) (increase(modeldeploy_predictions_total{{{sel}}}"
        f"[{target.window_seconds}s]))"
    )
    return {labels.get("class", ""): value for labels, value in prometheus.vector(query, timeout)}


def _prediction_check(
    spec: Analysis, target: Target, prometheus: PrometheusClient, timeout: float, found: _Findings
) -> None:
    """The canary's mix of answers against stable's on the same traffic: a canary whose
    classes moved (shuffled labels, a broken head) answers differently, though never in error."""
    from modeldeploy.artifacts.drift import psi

    canary = prediction_counts(prometheus, target, target.canary, timeout)
    stable = prediction_counts(prometheus, target, target.stable, timeout)
    answered, baseline = sum(canary.values()), sum(stable.values())
    if answered < spec.min_requests or baseline < spec.min_requests:
        found.inconclusive.append(
            f"prediction PSI: {answered:.0f} canary and {baseline:.0f} stable answers counted, "
            f"fewer than minRequests {spec.min_requests}"
        )
        return
    classes = sorted({*canary, *stable}, key=lambda c: (len(c), c))
    expected = [stable.get(c, 0.0) / baseline for c in classes]
    value = psi(expected, np.array([canary.get(c, 0.0) for c in classes]))
    found.numbers["prediction_psi"] = value
    limit = spec.max_prediction_psi
    if limit is not None and value > limit:
        found.failures.append(
            f"prediction PSI {value:.3f} > max {limit:g}: the canary answers other classes "
            "than stable on the same traffic"
        )


def _custom_checks(
    spec: Analysis, target: Target, prometheus: PrometheusClient, timeout: float, found: _Findings
) -> None:
    for query in spec.queries or []:
        try:
            value = prometheus.value(custom_query(query.query, target), timeout)
            if value is None:
                missing = missing_metrics(prometheus, query.query, timeout)
                found.inconclusive.append(
                    f"query {query.name}: no data"
                    + (f" (no series at all for {', '.join(missing)})" if missing else "")
                )
            elif query.max is not None and value > query.max:
                found.failures.append(f"query {query.name} = {value:.4g} > max {query.max:g}")
            elif query.min is not None and value < query.min:
                found.failures.append(f"query {query.name} = {value:.4g} < min {query.min:g}")
        except Exception as err:
            found.inconclusive.append(f"query {query.name}: {err}")


def shadow_queries(target: Target) -> dict[str, str]:
    """The PromQL of a shadow phase: what stable's pods counted of their mirrored requests to
    the candidate over the window."""
    window = f"{target.window_seconds}s"
    sel = (
        metric_sources.selector(target.namespace, target.deployment, target.stable)
        + f',candidate="{promql_string(target.canary)}"'
    )
    return {
        "outcomes": f"sum by (outcome) (increase(modeldeploy_shadow_requests_total{{{sel}}}"
        f"[{window}]))",
        "worst": f"max(max_over_time(modeldeploy_shadow_max_abs_diff{{{sel}}}[{window}]))",
        "p99": "histogram_quantile(0.99, sum by (le) (rate("
        f"modeldeploy_shadow_latency_seconds_bucket{{{sel}}}[{window}]))) * 1000",
    }


def _shadow_checks(
    spec: Analysis, target: Target, prometheus: PrometheusClient, timeout: float, found: _Findings
) -> ShadowResult:
    """Agreement and the candidate's error share on mirrored requests, with the numbers; the
    evidence of disagreements collected into the artifact store."""
    check = target.shadow
    assert check is not None
    queries = shadow_queries(target)
    counted = {
        labels.get("outcome", ""): value
        for labels, value in prometheus.vector(queries["outcomes"], timeout)
    }
    agree, disagree = counted.get("agree", 0.0), counted.get("disagree", 0.0)
    errors, dropped = counted.get("error", 0.0), counted.get("dropped", 0.0)
    compared, answered = agree + disagree, agree + disagree + errors
    agreement = agree / compared if compared else None
    evidence = check.evidence
    if disagree > 0 and check.stable_url and target.artifact_store:
        evidence = collect(
            check.stable_url,
            target.model,
            target.artifact_store,
            target.deployment,
            target.canary,
            check.evidence,
            check.max_evidence,
            timeout,
        )
    result = ShadowResult(
        agreement=agreement,
        compared=compared,
        disagreements=disagree,
        errors=errors,
        dropped=dropped,
        max_abs_diff=prometheus.value(queries["worst"], timeout),
        candidate_p99_latency_ms=prometheus.value(queries["p99"], timeout),
        evidence=evidence,
    )
    if answered < spec.min_requests:
        found.inconclusive.append(
            f"{answered:.0f} mirrored requests answered in the last {target.window_seconds}s "
            f"({dropped:.0f} dropped), fewer than minRequests {spec.min_requests}: does stable "
            "get traffic, and has the shadow ConfigMap reached its pods? see "
            "docs/canary.md#shadow"
        )
        return result
    max_rate = DEFAULT_MAX_ERROR_RATE if spec.max_error_rate is None else spec.max_error_rate
    if errors / answered > max_rate:
        found.failures.append(
            f"the candidate failed {errors / answered:.1%} of {answered:.0f} mirrored requests "
            f"({dropped:.0f} more dropped), more than maxErrorRate {max_rate:g}"
        )
    if agreement is not None and agreement < check.min_agreement:
        found.failures.append(
            f"shadow agreement {agreement:.4f} over {compared:.0f} compared requests is below "
            f"minAgreement {check.min_agreement:g}"
            + (f" (worst |Δ| {result.max_abs_diff:.3g})" if result.max_abs_diff else "")
        )
    return result


def run_checks(
    spec: Analysis,
    target: Target,
    prometheus: PrometheusClient | None,
    timeout: float,
    now: datetime,
) -> AnalysisResult:
    """Every check. Blocking (tritonclient, requests): async code runs it in a thread."""
    found = _Findings()
    # Only ever asked for a ready canary (``rollout.analysis_due``): readiness is not a check.
    if spec.live_parity:
        try:
            golden = (
                load_golden(target.artifact_store, target.artifact_key, target.model)
                if target.artifact_key
                else None
            )
            if golden is not None:
                if not target.canary_url:
                    raise ValueError("KServe reports no URL for the canary revision")
                found.numbers["parity"] = live_parity(
                    target.canary_url, target.model, golden, timeout
                )
        except Exception as err:
            found.failures.append(f"live parity: {err}")
    shadow = None
    if target.shadow is not None:
        # The shadow phase is judged on mirrored requests alone: no user traffic reaches the
        # candidate, so its own request metrics and the custom queries wait for the steps.
        if prometheus is None:
            found.failures.append(
                "a shadow phase is judged from Prometheus, and none is configured "
                "(spec.rollout.analysis.prometheus.address or the operator's "
                "--prometheus-address)"
            )
        else:
            try:
                shadow = _shadow_checks(spec, target, prometheus, timeout, found)
            except Exception as err:  # Prometheus down says nothing about the candidate
                found.inconclusive.append(f"prometheus at {prometheus}: {err}")
    elif prometheus:
        try:
            _builtin_checks(spec, target, prometheus, timeout, found)
            if spec.max_prediction_psi is not None:
                _prediction_check(spec, target, prometheus, timeout, found)
        except Exception as err:  # Prometheus down says nothing about the canary: no verdict
            found.inconclusive.append(f"prometheus at {prometheus}: {err}")
        _custom_checks(spec, target, prometheus, timeout, found)
    elif (
        spec.max_p99_latency_ms is not None
        or spec.queries
        or spec.max_latency_ratio
        or spec.max_prediction_psi is not None
    ):
        found.failures.append(
            "metric thresholds are set but no Prometheus is configured "
            "(spec.rollout.analysis.prometheus.address or the operator's --prometheus-address)"
        )
    numbers = found.numbers
    return AnalysisResult(
        at=now,
        passed=not found.failures and not found.inconclusive,
        ready=True,
        failures=found.failures,
        inconclusive=found.inconclusive,
        error_rate=numbers.get("error_rate"),
        p99_latency_ms=numbers.get("p99"),
        stable_p99_latency_ms=numbers.get("stable_p99"),
        parity_max_abs_diff=numbers.get("parity"),
        requests=numbers.get("requests"),
        client_error_rate=numbers.get("client_error_rate"),
        stable_client_error_rate=numbers.get("stable_client_error_rate"),
        prediction_psi=numbers.get("prediction_psi"),
        shadow=shadow,
    )
