"""One version, everywhere an image is named: pyproject's ``version`` is the chart's appVersion,
and every image tag the chart, the ClusterServingRuntime and the operator's defaults name is
that version (the CUDA runtime with ``-cuda12``). `make images` tags from the same version;
tests/images checks the built tags against :func:`referenced_images`."""

from __future__ import annotations

import tomllib
from typing import Any

import yaml

from modeldeploy.controller.config import DEFAULT_STAGING_IMAGE
from tests.support.controlplane import REPO_ROOT

CHART = REPO_ROOT / "charts" / "modeldeploy"


def version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def referenced_images() -> set[str]:
    """Every image the chart's values, the runtime YAML and the operator's defaults name."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    runtime = yaml.safe_load((REPO_ROOT / "runtimes" / "modeldeploy-onnx.yaml").read_text())

    def image(value: dict[str, str], default: str) -> str:  # as _helpers.tpl's modeldeploy.image
        return f"{value['registry']}/{value['repository']}:{value.get('tag') or default}"

    return {
        image(values["image"], version()),
        image(values["staging"]["image"], version()),
        image(values["runtime"]["image"], version()),
        image(values["runtime"]["gpuImage"], f"{version()}-cuda12"),
        *(c["image"] for c in runtime["spec"]["containers"]),
        runtime["metadata"]["annotations"]["modeldeploy.io/gpu-image"],
        DEFAULT_STAGING_IMAGE,
    }


def test_the_chart_the_runtime_yaml_and_the_operator_name_one_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version()
    tags = {image.rsplit(":", 1)[1] for image in referenced_images()}
    assert tags == {version(), f"{version()}-cuda12"}
    assert {image.rsplit(":", 1)[0] for image in referenced_images()} == {
        "ghcr.io/modeldeploy/operator",
        "ghcr.io/modeldeploy/staging",
        "ghcr.io/modeldeploy/onnx-runtime",
    }
