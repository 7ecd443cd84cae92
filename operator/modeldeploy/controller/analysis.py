"""One analysis run of a canary step: readiness, live golden parity, Prometheus metrics.

This is the rollout's only I/O besides the API server, kept apart from the pure ``rollout``
module. All checks run every time; the result carries every number measured and one line per
failed check, and ``rollout.decide`` turns it into the next step or a rollback.

- **Readiness**: the canary's readiness as KServe reports it. Our runtime turns ready only after
  its start-up self-test on the golden samples passed, so this includes that test.
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
import json
import math
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from modeldeploy.api.rollout import Analysis
from modeldeploy.controller.rollout import AnalysisResult, Target
from modeldeploy.runtime.artifact import MANIFEST, golden_arrays
from modeldeploy.staging.repository import open_store

REQUESTS = "modeldeploy_requests_total"
LATENCY = "modeldeploy_request_latency_seconds_bucket"


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
    spec = json.loads(manifest_bytes).get("golden") or {}
    data = store.read(key, f"{model}/{spec.get('file', 'golden.npz')}")
    if data is None or not spec.get("count", 1):
        return None
    inputs, outputs = golden_arrays(io.BytesIO(data))
    if not inputs or not outputs:
        return None
    return Golden(inputs, outputs, float(spec.get("atol", 1e-3)), float(spec.get("rtol", 1e-3)))


def live_parity(url: str, model: str, golden: Golden, timeout: float) -> float:
    """Send the golden inputs to ``url`` with tritonclient; the largest |served - stored|.
    Raises ValueError with the numbers when any element is outside the tolerance."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    parsed = urllib.parse.urlparse(url)
    client = httpclient.InferenceServerClient(
        parsed.netloc,
        ssl=parsed.scheme == "https",
        connection_timeout=timeout,
        network_timeout=timeout,
    )
    try:
        inputs = []
        for name, array in golden.inputs.items():
            item = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in golden.outputs]
        result = client.infer(model, inputs, outputs=outputs)
        worst, problems = 0.0, []
        for name, expected in golden.outputs.items():
            served = result.as_numpy(name)
            if served is None or served.shape != expected.shape:
                got = None if served is None else served.shape
                raise ValueError(f"output {name!r}: served shape {got}, golden {expected.shape}")
            served64, expected64 = served.astype(np.float64), expected.astype(np.float64)
            diff = np.abs(served64 - expected64)
            worst = max(worst, float(diff.max(initial=0.0)))
            if np.any(diff > golden.atol + golden.rtol * np.abs(expected64)):
                problems.append(
                    f"output {name!r} max |Δ| {float(diff.max()):.4g} > atol {golden.atol:g} "
                    f"+ rtol {golden.rtol:g}·|golden|"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return worst
    finally:
        client.close()


def prometheus_value(address: str, query: str, timeout: float) -> float | None:
    """The single number ``query`` returns now; None for an empty result or NaN."""
    url = f"{address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus: {body.get('error', body)}")
    data = body["data"]
    if data["resultType"] == "scalar":
        value = float(data["result"][1])
    else:
        results = data["result"]
        if not results:
            return None
        if len(results) > 1:
            raise RuntimeError(f"query returned {len(results)} series, expected one: {query}")
        value = float(results[0]["value"][1])
    return None if math.isnan(value) else value


def selector(target: Target, revision: str) -> str:
    return (
        f'namespace="{target.namespace}",modeldeploy_deployment="{target.deployment}",'
        f'modeldeploy_revision="{revision}"'
    )


def builtin_queries(target: Target) -> dict[str, str]:
    """The PromQL the analysis runs, by what it measures."""
    window = f"{target.window_seconds}s"
    canary, stable = selector(target, target.canary), selector(target, target.stable)

    def p99(sel: str) -> str:
        return f"1000 * histogram_quantile(0.99, sum by (le) (rate({LATENCY}{{{sel}}}[{window}])))"

    return {
        "requests": f"sum(increase({REQUESTS}{{{canary}}}[{window}]))",
        "errors": f'sum(increase({REQUESTS}{{{canary},outcome!="success"}}[{window}]))',
        "p99": p99(canary),
        "stable_p99": p99(stable),
    }


def custom_query(query: str, target: Target) -> str:
    return (
        query.replace("{{canary}}", target.canary)
        .replace("{{stable}}", target.stable)
        .replace("{{namespace}}", target.namespace)
        .replace("{{deployment}}", target.deployment)
        .replace("{{window}}", f"{target.window_seconds}s")
    )


def run_checks(
    spec: Analysis,
    target: Target,
    ready: bool,
    prometheus: str | None,
    timeout: float,
    now: datetime,
) -> AnalysisResult:
    """Every check. Blocking (tritonclient, urllib): async code runs it in a thread."""
    failures: list[str] = []
    numbers: dict[str, float | None] = {}
    if not ready:
        failures.append("canary not ready")
    if spec.live_parity and ready:
        try:
            golden = (
                load_golden(target.artifact_store, target.artifact_key, target.model)
                if target.artifact_key
                else None
            )
            if golden is not None:
                if not target.canary_url:
                    raise ValueError("KServe reports no URL for the canary revision")
                numbers["parity"] = live_parity(target.canary_url, target.model, golden, timeout)
        except Exception as err:
            failures.append(f"live parity: {err}")
    if prometheus:
        queries = builtin_queries(target)
        try:
            requests = prometheus_value(prometheus, queries["requests"], timeout)
            errors = prometheus_value(prometheus, queries["errors"], timeout)
            numbers["requests"] = requests
            if requests:
                numbers["error_rate"] = (errors or 0.0) / requests
                numbers["p99"] = prometheus_value(prometheus, queries["p99"], timeout)
            if spec.max_latency_ratio is not None and numbers.get("p99") is not None:
                numbers["stable_p99"] = prometheus_value(prometheus, queries["stable_p99"], timeout)
        except Exception as err:
            failures.append(f"prometheus at {prometheus}: {err}")
        rate, p99, stable_p99 = (
            numbers.get("error_rate"),
            numbers.get("p99"),
            numbers.get("stable_p99"),
        )
        if rate is not None and rate > spec.max_error_rate:
            failures.append(f"error rate {rate:.4f} > max {spec.max_error_rate:g}")
        if (
            p99 is not None
            and spec.max_p99_latency_ms is not None
            and p99 > spec.max_p99_latency_ms
        ):
            failures.append(f"p99 latency {p99:.1f} ms > max {spec.max_p99_latency_ms:g} ms")
        if (
            p99 is not None
            and stable_p99
            and spec.max_latency_ratio is not None
            and p99 / stable_p99 > spec.max_latency_ratio
        ):
            failures.append(
                f"p99 latency {p99:.1f} ms is {p99 / stable_p99:.2f}x stable's "
                f"{stable_p99:.1f} ms > max {spec.max_latency_ratio:g}x"
            )
        for query in spec.queries or []:
            try:
                value = prometheus_value(prometheus, custom_query(query.query, target), timeout)
            except Exception as err:
                failures.append(f"query {query.name}: {err}")
                continue
            if value is None:
                failures.append(f"query {query.name}: no data")
            elif query.max is not None and value > query.max:
                failures.append(f"query {query.name} = {value:.4g} > max {query.max:g}")
            elif query.min is not None and value < query.min:
                failures.append(f"query {query.name} = {value:.4g} < min {query.min:g}")
    elif spec.max_p99_latency_ms is not None or spec.queries or spec.max_latency_ratio:
        failures.append(
            "metric thresholds are set but no Prometheus is configured "
            "(spec.rollout.analysis.prometheus.address or the operator's --prometheus-address)"
        )
    return AnalysisResult(
        at=now,
        passed=not failures,
        ready=ready,
        failures=failures,
        error_rate=numbers.get("error_rate"),
        p99_latency_ms=numbers.get("p99"),
        stable_p99_latency_ms=numbers.get("stable_p99"),
        parity_max_abs_diff=numbers.get("parity"),
        requests=numbers.get("requests"),
    )
