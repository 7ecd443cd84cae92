"""A ``state_dict`` entrypoint names a callable the staging Job imports and calls with the
spec's ``entrypointArgs``. ``os:system`` with ``{command: ...}`` would run a shell command
(issue 16, item 6). The operator refuses an entrypoint outside its allow-list before any Job
exists, and passes the list to the Job, where staging refuses it again before importing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modeldeploy.api import entrypoints
from modeldeploy.controller.config import OperatorConfig
from modeldeploy.controller.reconcile import plan
from modeldeploy.staging import errors
from modeldeploy.staging.stage import stage
from tests.security.plans import refused_before_anything
from tests.staging.conftest import deployment
from tests.unit.test_controller import CONFIG, NOW, body_of, example, observed

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests

SHELL = "os:system"


def with_entrypoint(body: dict[str, Any], entrypoint: str, **args: Any) -> dict[str, Any]:
    body["spec"]["model"].update(
        {"format": "state_dict", "entrypoint": entrypoint, "entrypointArgs": args}
    )
    return body


def test_a_shell_entrypoint_is_refused_before_a_staging_job_exists() -> None:
    body = with_entrypoint(body_of(example()), SHELL, command="touch /tmp/pwned")
    result = plan(observed(body), CONFIG, NOW)
    ready = refused_before_anything(result)
    assert ready["reason"] == "EntrypointRefused"
    assert ready["message"].startswith(
        "entrypoint os:system: module os is not in the allow-list (torchvision.models, timm, "
        "transformers)"
    )


def stage_env(job: dict[str, Any]) -> dict[str, str]:
    """The environment of the Job's step that imports the entrypoint."""
    pod = job["spec"]["template"]["spec"]
    (stage,) = [c for c in pod["initContainers"] if c["name"] == "stage"]
    return {e["name"]: e["value"] for e in stage["env"]}


def test_an_allowed_entrypoint_stages_and_the_job_carries_the_list() -> None:
    body = with_entrypoint(body_of(example()), "torchvision.models:resnet18", num_classes=10)
    result = plan(observed(body), CONFIG, NOW)
    assert result.create_job is not None
    env = stage_env(result.create_job)
    assert env[entrypoints.ENV] == "torchvision.models,timm,transformers"
    # The operator's setting decides, for the plan and for the Job alike.
    mine = OperatorConfig.from_env({entrypoints.ENV: "acme.models, torchvision.models"})
    assert mine.entrypoint_modules == ("acme.models", "torchvision.models")
    own = with_entrypoint(body_of(example()), "acme.models.vision:build")
    job = plan(observed(own), mine, NOW).create_job
    assert job is not None
    assert stage_env(job)[entrypoints.ENV] == "acme.models,torchvision.models"
    assert plan(observed(own), CONFIG, NOW).create_job is None


def test_prefixes_are_whole_module_names() -> None:
    assert entrypoints.allowed("timm.models.resnet:resnet50", ["timm"])
    assert entrypoints.allowed("timm:create_model", ["timm"])
    assert not entrypoints.allowed("timmy:build", ["timm"])
    assert not entrypoints.allowed("os:system", [])


def test_staging_refuses_a_shell_entrypoint_before_importing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    weights = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), weights)
    marker = tmp_path / "pwned"
    spec = deployment(
        "shell",
        f"file://{weights}",
        [{"name": "x", "shape": [4]}],
        model={
            "format": "state_dict",
            "entrypoint": SHELL,
            "entrypointArgs": {"command": f"touch {marker}"},
        },
    )
    monkeypatch.setenv(entrypoints.ENV, "torchvision.models")
    with pytest.raises(errors.EntrypointError) as refused:
        stage(spec, str(tmp_path / "store"))
    assert str(refused.value).startswith(
        "entrypoint os:system: module os is not in the allow-list (torchvision.models)"
    )
    assert refused.value.exit_code == 14
    assert not marker.exists()
