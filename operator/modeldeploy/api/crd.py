"""Generate the ModelDeployment CustomResourceDefinition from the pydantic models.

``make crds`` writes the result to ``crds/modeldeployment.yaml``; a unit test fails when the
committed file differs, so the models stay the single source of truth.

Pydantic emits JSON Schema (draft 2020-12, with ``$ref`` and ``anyOf: [X, null]`` for optional
fields). The API server wants a *structural* OpenAPI v3 schema: every node typed, no ``$ref``, no
nullable unions, booleans for exclusive bounds. This module does that translation and adds what
only Kubernetes knows: CEL rules, list types, printer columns and the status subresource.
"""

from __future__ import annotations

from typing import Any

from modeldeploy.api.base import ApiModel
from modeldeploy.api.modeldeployment import (
    GROUP,
    KIND,
    NAME_MESSAGE,
    NAME_RULE,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    ModelDeploymentSpec,
)
from modeldeploy.api.status import ModelDeploymentStatus

#: JSON Schema keys with no meaning to the API server, dropped on the way.
_DROPPED = {"title"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the model serves the desired artifact.",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why it is (not) ready, in one word (docs/operator.md lists them).",
    },
    {
        "name": "Precision",
        "type": "string",
        "jsonPath": ".status.precision",
        "description": "Precision of the graph the stable revision serves.",
    },
    {
        "name": "Traffic",
        "type": "string",
        "jsonPath": ".status.traffic.split",
        "description": "Percent of traffic on stable/canary.",
    },
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.rollout.phase",
        "description": "The rollout's phase: Progressing, Paused, Promoted, RolledBack, …",
    },
    {
        "name": "URL",
        "type": "string",
        "jsonPath": ".status.url",
        "description": "Inference endpoint.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaError(ValueError):
    """The models use a construct that has no structural OpenAPI equivalent."""


def _clean(text: str) -> str:
    return " ".join(text.split())


def _resolve(node: Any, defs: dict[str, Any], path: str, field: bool = False) -> Any:
    """Inline ``$ref``s, unwrap optional unions and translate keywords, recursively."""
    if isinstance(node, list):
        return [_resolve(item, defs, path) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}  # the field's own description and default win
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node.pop("anyOf") if b != {"type": "null"}]
        if len(branches) != 1:
            raise SchemaError(f"{path}: unions other than Optional[X] are not structural")
        node = {**branches[0], **node}
        if "$ref" in node:
            return _resolve(node, defs, path, field)
        if node.get("default", 0) is None:
            del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, key in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[key] = node[bound]
            node[bound] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {
                name: _resolve(prop, defs, f"{path}.{name}", field=True)
                for name, prop in value.items()
            }
        elif key == "items":
            out[key] = _resolve(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if isinstance(value, dict):  # a map; False (closed object) is the structural default
                out[key] = _resolve(value, defs, f"{path}{{}}")
        elif key == "description":
            out[key] = _clean(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out = {
            k: v
            for k, v in out.items()
            if k in {"type", "description", "x-kubernetes-preserve-unknown-fields"}
        }
        out["type"] = "object"
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise SchemaError(f"{path}: no type")
    if field and "description" not in out:
        raise SchemaError(f"{path}: no description; give the field an attribute docstring")
    return out


def object_schema(model: type[ApiModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one API model, CEL rules included."""
    raw = model.model_json_schema(by_alias=True)
    schema: dict[str, Any] = _resolve(raw, raw.get("$defs", {}), model.__name__, field=True)
    schema.pop("$defs", None)
    return schema


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the ModelDeployment version."""
    spec = object_schema(ModelDeploymentSpec)
    status = object_schema(ModelDeploymentStatus)
    return {
        "type": "object",
        "description": "A trained model served on KServe: staged and verified by ModelDeploy, "
        "rolled out by canary.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [{"rule": NAME_RULE, "message": NAME_MESSAGE}],
    }


def custom_resource_definition() -> dict[str, Any]:
    """The complete CRD manifest, ready for ``kubectl apply``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modeldeploy"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "modeldeploy"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


_KEY_ORDER = ("description", "type", "required", "properties", "items", "default")


def _ordered(node: Any) -> Any:
    """Descriptions and types first, so the YAML reads like a hand-written CRD."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    first = [k for k in _KEY_ORDER if k in node]
    rest = sorted(k for k in node if k not in _KEY_ORDER)
    return {k: _ordered(node[k]) for k in first + rest}


def render_yaml() -> str:
    """``crds/modeldeployment.yaml`` as ``make crds`` writes it."""
    import yaml

    crd = custom_resource_definition()
    crd["spec"]["versions"][0]["schema"] = _ordered(crd["spec"]["versions"][0]["schema"])
    header = (
        "# Generated from the pydantic models in operator/modeldeploy/api by `make crds`.\n"
        "# Do not edit by hand: tests/unit/test_crd.py fails when this file drifts.\n"
    )
    return header + yaml.safe_dump(crd, sort_keys=False, width=100)
