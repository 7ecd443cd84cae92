"""Generate ``docs/api.md``, the field reference, from the same schema as the CRD.

``make crds`` writes it next to the CRD, and the drift test covers both, so the reference never
disagrees with what the API server enforces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from modeldeploy.api.crd import openapi_schema

#: (schema key, symbol, symbol when the matching exclusive flag is set)
_BOUNDS = (
    ("minimum", "≥", ">", "exclusiveMinimum"),
    ("maximum", "≤", "<", "exclusiveMaximum"),
    ("minItems", "items ≥", "", ""),
    ("maxItems", "items ≤", "", ""),
    ("minLength", "length ≥", "", ""),
    ("maxLength", "length ≤", "", ""),
)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    if node.get("type") == "array":
        return f"[]{_type(node.get('items', {}))}"
    if "additionalProperties" in node:
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(node.get("type", ""))


def _constraints(node: dict[str, Any], required: bool) -> str:
    parts = ["**required**"] if required else []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, symbol, strict_symbol, strict_flag in _BOUNDS:
        if key in node:
            strict = bool(strict_flag) and node.get(strict_flag) is True
            parts.append(f"{strict_symbol if strict else symbol} {node[key]}")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts).replace("|", "\\|")


def _default(node: dict[str, Any]) -> str:
    if "default" not in node or isinstance(node["default"], dict):
        return ""
    return f"`{json.dumps(node['default'])}`"


def _rows(node: dict[str, Any], path: str) -> Iterator[str]:
    required = set(node.get("required", []))
    for name, prop in node.get("properties", {}).items():
        field = f"{path}.{name}"
        description = prop.get("description", "").replace("|", "\\|")
        yield (
            f"| `{field}` | {_type(prop)} | {_default(prop)} | "
            f"{_constraints(prop, name in required)} | {description} |"
        )
        if prop.get("type") == "object":
            yield from _rows(prop, field)
        elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "object":
            yield from _rows(prop["items"], f"{field}[]")


def render_markdown() -> str:
    """The whole field reference as Markdown."""
    schema = openapi_schema()
    head = "| field | type | default | constraints | description |\n| --- | --- | --- | --- | --- |"
    spec = "\n".join(_rows(schema["properties"]["spec"], "spec"))
    status = "\n".join(_rows(schema["properties"]["status"], "status"))
    return (
        "# ModelDeployment API reference (modeldeploy.io/v1alpha1)\n\n"
        "Generated from `operator/modeldeploy/api` by `make crds`; do not edit by hand.\n"
        "Objects whose fields all have defaults are filled in when left out.\n\n"
        f"## spec\n\n{head}\n{spec}\n\n## status\n\nWritten by the operator through the status "
        f"subresource.\n\n{head}\n{status}\n"
    )
