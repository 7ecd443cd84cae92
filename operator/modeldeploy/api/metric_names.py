"""The metrics a custom PromQL check reads, and the ones our runtime exports.

A custom query on a metric that does not exist returns no data, and a rollout cannot be judged
on it. ``modeldeploy validate`` (and the operator, which validates every spec the same way)
refuses a query that names a ``modeldeploy_`` metric our runtime does not export, or that names
one while another runtime serves. Names of other exporters (Triton, Knative, kube-state-metrics)
cannot be known offline; the operator looks those up in Prometheus when a query returns nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

OUR_PREFIX = "modeldeploy_"


@dataclass(frozen=True)
class MetricFamily:
    """One metric family: what ``/metrics`` shows and what docs/metrics.md lists."""

    name: str
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str
    only_when: str | None = None
    """Exported only under this condition (None: always)."""

    def counter(self) -> Any:
        """The prometheus-client Counter of this family (imported here, not by the base
        install, which has no prometheus-client)."""
        from prometheus_client import Counter

        assert self.kind == "counter"
        return Counter(self.name, self.help, list(self.labels))

    def gauge(self) -> Any:
        from prometheus_client import Gauge

        assert self.kind == "gauge"
        return Gauge(self.name, self.help, list(self.labels))

    def histogram(self, buckets: tuple[float, ...]) -> Any:
        from prometheus_client import Histogram

        assert self.kind == "histogram"
        return Histogram(self.name, self.help, list(self.labels), buckets=buckets)

    def samples(self) -> tuple[str, ...]:
        """The sample names prometheus-client writes for this family."""
        if self.kind == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "count", "sum", "created"))
        return (self.name,)


MODEL_LABEL = "model_name"
"""The model's label, named as the KServe SDK names it on the same ``/metrics``."""

_INPUT_STATISTICS = {
    "mean": "Mean",
    "std": "Standard deviation",
    "min": "Smallest",
    "max": "Largest",
}

MAX_COUNTED_CLASSES = 1000
"""Answers are counted by class up to this many classes (ImageNet's 1000): one series each."""

_WITH_REFERENCE = "the artifact carries a reference profile (docs/monitoring.md)"
_WHILE_SHADOWING = "the pod has mirrored to a shadowed candidate (docs/canary.md#shadow)"

RUNTIME_FAMILIES: tuple[MetricFamily, ...] = (
    MetricFamily(
        "modeldeploy_requests",
        "counter",
        (MODEL_LABEL, "outcome"),
        "Inference requests by outcome: success, invalid (the client's fault), error, "
        "overloaded (503: queue full), timeout (504: deadline passed).",
    ),
    MetricFamily(
        "modeldeploy_request_latency_seconds",
        "histogram",
        (MODEL_LABEL,),
        "Time from request decoded to response built, queueing included.",
    ),
    MetricFamily(
        "modeldeploy_batch_rows",
        "histogram",
        (MODEL_LABEL,),
        "Rows per ONNX Runtime call after dynamic batching.",
    ),
    MetricFamily(
        "modeldeploy_queue_wait_seconds",
        "histogram",
        (MODEL_LABEL,),
        "Time a request waited in the batching queue.",
    ),
    MetricFamily(
        "modeldeploy_queued_requests",
        "gauge",
        (MODEL_LABEL,),
        "Requests waiting for a batch now (refused with 503 beyond the queue bound); "
        "an autoscaling signal.",
    ),
    MetricFamily(
        "modeldeploy_self_test_passed",
        "gauge",
        (MODEL_LABEL,),
        "1 when the start-up self-test passed, else 0.",
    ),
    MetricFamily(
        "modeldeploy_self_test_max_abs_diff",
        "gauge",
        (MODEL_LABEL,),
        "Largest difference between served and stored golden outputs at start-up.",
    ),
    *(
        MetricFamily(
            f"modeldeploy_input_{statistic}",
            "gauge",
            (MODEL_LABEL, "input"),
            f"{text} of an input's values over the last requests served (a sliding window, "
            "computed when scraped), for drift alerts.",
        )
        for statistic, text in _INPUT_STATISTICS.items()
    ),
    MetricFamily(
        "modeldeploy_predictions",
        "counter",
        (MODEL_LABEL, "class"),
        "Answers by top-1 class (the index into the model's first output): what "
        "analysis.maxPredictionPsi compares between canary and stable.",
        only_when=f"the model's first output is [N, classes], 2 to {MAX_COUNTED_CLASSES} classes",
    ),
    MetricFamily(
        "modeldeploy_drift_psi",
        "gauge",
        (MODEL_LABEL, "input", "channel"),
        "Population stability index of an input channel's values over the drift window, "
        "against the artifact's reference profile (0.1: moderate, 0.25: significant shift).",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_drift_ks",
        "gauge",
        (MODEL_LABEL, "input", "channel"),
        "Kolmogorov-Smirnov statistic (0 to 1) of an input channel's values over the drift "
        "window, against the reference profile, at its bin edges.",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_drift_mean_psi",
        "gauge",
        (MODEL_LABEL, "input", "channel"),
        "Population stability index of the requests' per-sample channel means over the drift "
        "window, against the reference's: a shift of the whole input (brightness, inversion).",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_prediction_drift_psi",
        "gauge",
        (MODEL_LABEL,),
        "Population stability index of the top-1 classes answered over the drift window, "
        "against their shares on the reference.",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_prediction_drift_ks",
        "gauge",
        (MODEL_LABEL,),
        "Kolmogorov-Smirnov statistic of the top score answered over the drift window, against "
        "its distribution on the reference.",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_drift_window_requests",
        "gauge",
        (MODEL_LABEL,),
        "Requests in the drift window now: what the drift statistics stand on.",
        only_when=_WITH_REFERENCE,
    ),
    MetricFamily(
        "modeldeploy_shadow_requests",
        "counter",
        (MODEL_LABEL, "candidate", "outcome"),
        "Requests stable mirrored to a shadowed candidate, by outcome: agree, disagree, error "
        "(the candidate failed or timed out) or dropped (no room in flight, never sent).",
        only_when=_WHILE_SHADOWING,
    ),
    MetricFamily(
        "modeldeploy_shadow_abs_diff",
        "histogram",
        (MODEL_LABEL, "candidate"),
        "Largest |candidate - stable| over the elements of each compared answer.",
        only_when=_WHILE_SHADOWING,
    ),
    MetricFamily(
        "modeldeploy_shadow_max_abs_diff",
        "gauge",
        (MODEL_LABEL, "candidate"),
        "Largest |candidate - stable| seen since the candidate's shadow began.",
        only_when=_WHILE_SHADOWING,
    ),
    MetricFamily(
        "modeldeploy_shadow_latency_seconds",
        "histogram",
        (MODEL_LABEL, "candidate"),
        "The candidate's answer time to mirrored requests, as stable measured it.",
        only_when=_WHILE_SHADOWING,
    ),
)
"""Every family ``modeldeploy serve`` exports (runtime/metrics.py builds them from here)."""

OPERATOR_FAMILIES: tuple[MetricFamily, ...] = (
    MetricFamily(
        "modeldeploy_operator_reconciliations",
        "counter",
        ("result",),
        "Reconciliations of a ModelDeployment, by result (ok, transient_error, permanent_error).",
    ),
    MetricFamily(
        "modeldeploy_operator_reconcile_duration_seconds",
        "histogram",
        (),
        "Time one reconciliation took, analysis included.",
    ),
    MetricFamily(
        "modeldeploy_operator_rollouts",
        "counter",
        ("outcome",),
        "Rollouts that ended, by outcome (Promoted, RolledBack, Aborted, Failed).",
    ),
    MetricFamily(
        "modeldeploy_operator_analysis_runs",
        "counter",
        ("passed",),
        "Canary analysis runs, by verdict.",
    ),
    MetricFamily(
        "modeldeploy_operator_analysis_duration_seconds",
        "histogram",
        (),
        "Time one analysis run took (golden requests and Prometheus queries).",
    ),
)
"""Every family ``modeldeploy operator --metrics-port`` exports (controller/metrics.py)."""


def family(name: str) -> MetricFamily:
    """The catalogue entry called ``name``."""
    return next(f for f in (*RUNTIME_FAMILIES, *OPERATOR_FAMILIES) if f.name == name)


RUNTIME_METRICS = frozenset(s for f in RUNTIME_FAMILIES for s in f.samples())
"""Every sample name ``modeldeploy serve`` exports on ``/metrics``; a runtime test compares
this with a real server's output."""


def render_catalogue() -> str:
    """docs/metrics.md: the catalogue as Markdown (``make crds`` writes it; a test checks it)."""
    lines = [
        "# Metrics",
        "",
        "<!-- Generated by `modeldeploy metrics` from modeldeploy/api/metric_names.py "
        "(`make crds`); do not edit. -->",
        "",
        "Names follow Prometheus conventions: a unit suffix (`_seconds`, `_rows`, "
        "`_requests`), `_total` on counters, one gauge per statistic. The model's label is "
        f"`{MODEL_LABEL}`, as the KServe SDK names it on the same `/metrics`.",
        "",
    ]
    sections = (
        ("The runtime (`modeldeploy serve`, on its HTTP port's `/metrics`)", RUNTIME_FAMILIES),
        ("The operator (`modeldeploy operator --metrics-port`)", OPERATOR_FAMILIES),
    )
    for title, families in sections:
        lines += [
            f"## {title}",
            "",
            "| metric | type | labels | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for f in families:
            shown = f"{f.name}_total" if f.kind == "counter" else f.name
            labels = ", ".join(f"`{label}`" for label in f.labels) or "-"
            when = f" Only when {f.only_when}." if f.only_when else ""
            lines.append(f"| `{shown}` | {f.kind} | {labels} | {f.help}{when} |")
        lines.append("")
    lines += [
        "Pods also carry the labels docs/canary.md#labels relabels onto every series "
        "(`namespace`, `modeldeploy_deployment`, `modeldeploy_revision`, ...). The KServe SDK's "
        "own request histograms are on the runtime's `/metrics` too.",
        "",
    ]
    return "\n".join(lines)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_TEMPLATES = re.compile(r"\{\{[a-z]+\}\}")
_MATCHERS = re.compile(r"\{[^{}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])[a-zA-Z_:][\w:]*")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and"}
_KEYWORDS |= {"or", "unless", "offset", "atan2", "inf", "nan", "Inf", "NaN"}


def metric_names(query: str) -> list[str]:
    """The metric names ``query`` selects, in order of appearance, each once.

    Not a PromQL parser: strings, ``{{...}}`` templates, label matchers, ranges and grouping
    labels are cut out first; what is left that is neither a function call nor a keyword is a
    metric name."""
    text = _TEMPLATES.sub("", query)
    text = _STRINGS.sub('""', text)
    text = _GROUPING.sub(" ", text)
    while _MATCHERS.search(text):
        text = _MATCHERS.sub(" ", text)
    names: list[str] = []
    for match in _NAME.finditer(text):
        name = match.group()
        called = text[match.end() :].lstrip().startswith("(")  # a function or aggregation
        if not called and name not in _KEYWORDS and name not in names:
            names.append(name)
    return names


OWN_NAMESPACE = 'namespace="{{namespace}}"'
"""The matcher that confines a selector to the deployment's own namespace."""

_OWN = "namespace=__own__"
_BLOCK = re.compile(r"\{[^{}]*\}")


def unconfined_selectors(query: str) -> list[str]:
    """The selectors in ``query`` without the ``namespace="{{namespace}}"`` matcher, which
    could read another namespace's series. Each is named by its metric (or its matchers).

    Not a PromQL parser either: the namespace matcher becomes a token, then strings, templates
    and grouping labels are cut out as in ``metric_names``; what remains of each selector is a
    metric name, a matcher block, or both."""
    text = query.replace(OWN_NAMESPACE, _OWN)
    text = _STRINGS.sub('""', text)
    text = _TEMPLATES.sub("T", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    found: list[str] = []
    position = 0
    while position < len(text):
        name = _NAME.match(text, position)
        block = _BLOCK.match(text, position)
        if name and not (
            position and (text[position - 1].isalnum() or text[position - 1] in "_:.")
        ):
            rest = text[name.end() :].lstrip()
            if rest.startswith("(") or name.group() in _KEYWORDS:
                position = name.end()
                continue
            after = text.index(rest, name.end()) if rest else len(text)
            matchers = _BLOCK.match(text, after)
            if matchers is None or _OWN not in matchers.group():
                found.append(name.group())
            position = matchers.end() if matchers else name.end()
            continue
        if block:
            if _OWN not in block.group():
                found.append(block.group())
            position = block.end()
            continue
        position += 1
    return found


def unknown_metrics(query: str, ours_serves: bool) -> Iterator[str]:
    """Why each ``modeldeploy_`` metric in ``query`` cannot have data."""
    for name in metric_names(query):
        if not name.startswith(OUR_PREFIX):
            continue
        if not ours_serves:
            yield f"metric {name} is exported by the modeldeploy-onnx runtime only"
        elif name not in RUNTIME_METRICS:
            yield (
                f"metric {name} is not exported by the modeldeploy-onnx runtime "
                f"(it exports {', '.join(sorted(RUNTIME_METRICS))})"
            )
