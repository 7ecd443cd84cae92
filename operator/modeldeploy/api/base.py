"""Shared building blocks for the ModelDeployment API models.

Every API model derives from :class:`ApiModel` so that the Python names are snake_case while
the wire names (YAML, JSON, the CRD) are camelCase, unknown fields are refused rather than
silently dropped, and each field's attribute docstring becomes its description in the CRD.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import durationpy
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, at a field path such as ``spec.rollout.steps[1].weight``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule, written once and enforced in two places.

    ``cel`` goes into the CRD as an ``x-kubernetes-validations`` entry, so the API server refuses
    a violating object on ``kubectl apply``. ``holds`` is the same rule in Python, so
    ``modeldeploy validate`` refuses it before anything reaches a cluster. Both report
    ``message`` at ``field_path``; ``locate``, where given, narrows the Python report to the exact
    list items at fault (the API server can only name the list). The cluster tests submit every
    violation to a real API server to prove the two halves agree.
    """

    cel: str
    message: str
    field_path: str
    holds: Callable[[Any], bool]
    locate: Callable[[Any], Iterable[tuple[str, str]]] | None = None
    reason: str = "FieldValueInvalid"

    def to_crd(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        if self.reason != "FieldValueInvalid":
            entry["reason"] = self.reason
        return entry

    def problems(self, obj: Any) -> Iterator[tuple[str, str]]:
        """(path relative to ``obj``, message) for each place ``obj`` breaks this rule."""
        if self.holds(obj):
            return
        if self.locate is not None:
            yield from self.locate(obj)
        else:
            yield self.field_path.lstrip("."), self.message


def _add_cel_rules(schema: dict[str, Any], cls: type[ApiModel]) -> None:
    """Put a model's CEL rules into its JSON schema; the CRD generator carries them along."""
    if cls.cel_rules:
        schema["x-kubernetes-validations"] = [rule.to_crd() for rule in cls.cel_rules]


class ApiModel(BaseModel):
    """Base of every ModelDeployment API object."""

    model_config = ConfigDict(
        json_schema_extra=_add_cel_rules,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    #: Cross-field rules on this object: emitted into the CRD and checked by ``validate``.
    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, JSON types, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def nested(model: type[ApiModel]) -> Any:
    """A sub-object that is always present, with every default filled in.

    The CRD default is the fully defaulted object rather than ``{}``: the API server checks a
    default against the schema (CEL rules included) before applying the defaults inside it, so
    ``{}`` would fail rules that read those inner fields. Pydantic does the same through
    ``default_factory``.
    """
    default = model().model_dump(mode="json", by_alias=True, exclude_none=True)
    return Field(default_factory=model, json_schema_extra={"default": default})


DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""An RFC 1035 label: what KServe needs for InferenceService and runtime names."""

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""An RFC 1123 subdomain: the names of ConfigMaps and Secrets."""

DURATION = r"^([0-9]+(\.[0-9]+)?(us|ms|s|m|h))+$"
"""A Go-style duration such as ``500ms``, ``30s`` or ``1m30s``."""

QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[munkMGTPE]|[KMGTPE]i)?$"
"""A non-negative Kubernetes resource quantity such as ``500m``, ``2`` or ``4Gi``."""


def duration_seconds(text: str) -> float:
    """Seconds in a duration string that matched :data:`DURATION` (Go's syntax, parsed by
    durationpy, as the Kubernetes client parses Go durations)."""
    return float(durationpy.from_str(text).total_seconds())


Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]


def _check_quantity(value: int | str) -> int | str:
    if not re.fullmatch(QUANTITY, str(value)):
        raise ValueError(f"{value!r} is not a resource quantity such as 500m, 2 or 4Gi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY,
        }
    ),
]
"""An int-or-string resource quantity, as Kubernetes and KServe spell ``cpu`` and ``memory``."""
