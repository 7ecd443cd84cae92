"""Check ModelDeployment documents the way the API server will, and say where each problem is.

Used by ``modeldeploy validate`` before anything reaches a cluster, and by the operator to turn a
spec it cannot act on into a status condition instead of an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from modeldeploy.api.base import ApiModel, Problem
from modeldeploy.api.metric_names import unknown_metrics
from modeldeploy.api.modeldeployment import (
    API_VERSION,
    KIND,
    NAME_MESSAGE,
    ModelDeployment,
    ModelDeploymentSpec,
    name_is_valid,
)
from modeldeploy.api.serving import DEFAULT_RUNTIME

#: Parts of a pydantic error location that name a union branch or validator, not a field.
_TYPE_TAGS = {"int", "str", "float", "bool", "list", "dict", "none"}


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _TYPE_TAGS or "[" in part or "(" in part:
            continue
        else:
            path += f".{part}" if path else part
    return path


def _message(error: dict[str, Any]) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return message


def _rule_problems(obj: Any, path: str) -> Iterator[Problem]:
    """Apply every CEL rule's Python half to ``obj`` and everything below it."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _rule_problems(item, f"{path}[{i}]")
        return
    if not isinstance(obj, BaseModel):
        return
    if isinstance(obj, ApiModel):
        for rule in obj.cel_rules:
            for relative, message in rule.problems(obj):
                sep = "" if relative.startswith("[") or not relative else "."
                yield Problem(f"{path}{sep}{relative}", message)
    for name, field in type(obj).model_fields.items():
        value = getattr(obj, name)
        field_path = f"{path}.{field.alias or name}"
        yield from _duplicate_keys(value, field.json_schema_extra, field_path)
        yield from _rule_problems(value, field_path)


def _duplicate_keys(value: Any, extra: Any, path: str) -> Iterator[Problem]:
    """What the API server enforces for ``x-kubernetes-list-type: map``: unique keys."""
    if not isinstance(extra, dict) or extra.get("x-kubernetes-list-type") != "map" or not value:
        return
    keys = extra["x-kubernetes-list-map-keys"]
    seen: set[tuple[Any, ...]] = set()
    for i, item in enumerate(value):
        key = tuple(getattr(item, k) for k in keys)
        if key in seen:
            yield Problem(f"{path}[{i}].{keys[0]}", f"duplicate value {key[0]!r}")
        seen.add(key)


def query_problems(spec: ModelDeploymentSpec) -> Iterator[Problem]:
    """Custom queries on metrics that cannot exist: beyond what the API server can check, so
    the operator checks them too."""
    ours = spec.serving.runtime == DEFAULT_RUNTIME
    for i, query in enumerate(spec.rollout.analysis.queries or []):
        for message in unknown_metrics(query.query, ours):
            yield Problem(f"spec.rollout.analysis.queries[{i}].query", message)


def validate_document(doc: Any) -> list[Problem]:
    """Every problem in one ModelDeployment document; an empty list means it is valid."""
    if not isinstance(doc, dict):
        return [Problem("<document>", "must be a mapping with apiVersion, kind, metadata and spec")]
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        return [
            Problem(
                "apiVersion" if doc.get("apiVersion") != API_VERSION else "kind",
                f"not a ModelDeployment (expected apiVersion {API_VERSION}, kind {KIND})",
            )
        ]
    problems: list[Problem] = []
    name = (doc.get("metadata") or {}).get("name")
    if isinstance(name, str) and not name_is_valid(name):
        problems.append(Problem("metadata.name", NAME_MESSAGE))
    try:
        deployment = ModelDeployment.model_validate(doc)
    except ValidationError as err:
        problems += [Problem(_path(e["loc"]), _message(dict(e))) for e in err.errors()]
        return problems
    problems += _rule_problems(deployment.spec, "spec")
    problems += query_problems(deployment.spec)
    return problems


def parse(doc: Any) -> ModelDeployment:
    """A valid ModelDeployment, or :class:`InvalidSpecError` listing every problem."""
    problems = validate_document(doc)
    if problems:
        raise InvalidSpecError(problems)
    return ModelDeployment.model_validate(doc)


class InvalidSpecError(ValueError):
    """A document that is not a valid ModelDeployment; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
