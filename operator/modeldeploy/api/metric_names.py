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

OUR_PREFIX = "modeldeploy_"

RUNTIME_METRICS = frozenset(
    {
        "modeldeploy_requests_total",
        "modeldeploy_requests_created",
        *(
            f"{histogram}_{suffix}"
            for histogram in (
                "modeldeploy_request_latency_seconds",
                "modeldeploy_batch_size",
                "modeldeploy_queue_wait_seconds",
            )
            for suffix in ("bucket", "count", "sum", "created")
        ),
        "modeldeploy_queue_depth",
        "modeldeploy_self_test_passed",
        "modeldeploy_self_test_max_abs_diff",
        "modeldeploy_input_statistic",
    }
)
"""Every sample name ``modeldeploy serve`` exports on ``/metrics`` (runtime/metrics.py); a
runtime test compares this with a real server's output."""

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
