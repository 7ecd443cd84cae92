"""The committed CRD is exactly what the pydantic models generate, and is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api.crd import custom_resource_definition, render_yaml
from modeldeploy.api.reference import render_markdown

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "modeldeployment.yaml"


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.get("properties", {}).items():
            yield from _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from _walk(node["items"], f"{path}[]")


def schema() -> dict[str, Any]:
    return custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render_yaml(), "crds/ is stale: run `make crds`"


def test_committed_reference_matches_the_models() -> None:
    reference = CRD_FILE.parents[1] / "docs" / "api.md"
    assert reference.read_text() == render_markdown(), "docs/api.md is stale: run `make crds`"
    assert "| `spec.rollout.steps[].weight` | integer |" in render_markdown()


def test_names_and_subresources() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd["metadata"]["name"] == "modeldeployments.modeldeploy.io"
    assert crd["spec"]["names"]["shortNames"] == ["mdep"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Reason", "Precision", "Traffic", "Phase", "URL", "Age"]


def test_schema_is_structural_and_described() -> None:
    for path, node in _walk(schema()["properties"]["spec"]):
        assert "$ref" not in node, path
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}.{name} has no description"


def test_rules_enums_bounds_and_defaults_reach_the_schema() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    rollout = spec["rollout"]["properties"]
    assert rollout["steps"]["items"]["properties"]["weight"]["minimum"] == 1
    assert rollout["steps"]["items"]["properties"]["weight"]["maximum"] == 100
    assert any("isSorted" in r["rule"] for r in spec["rollout"]["x-kubernetes-validations"])
    model = spec["model"]["properties"]
    assert model["format"]["enum"] == ["pytorch", "torchscript", "state_dict", "onnx"]
    assert model["uri"]["pattern"].startswith("^(s3://")
    resources = spec["serving"]["properties"]["resources"]
    assert resources["properties"]["cpu"]["x-kubernetes-int-or-string"] is True
    assert {r["message"] for r in resources["x-kubernetes-validations"]} == {
        "gpuType needs gpu > 0"
    }
    latency = spec["rollout"]["properties"]["analysis"]["properties"]["maxP99LatencyMs"]
    assert latency["exclusiveMinimum"] is True
    assert latency["minimum"] == 0
    assert spec["optimization"]["default"]["precision"] == "fp32"
    assert spec["serving"]["default"]["scaling"]["minReplicas"] == 1
