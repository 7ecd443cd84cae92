"""An ONNX model is staged without PyTorch: its build step neither needs nor loads torch, whose
import alone costs a staging pod about 3 s of CPU and a few hundred MB of memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeldeploy.staging.plan import StagingPlan
from tests.runtime import graphs
from tests.support.controlplane import REPO_ROOT


def blocked_torch(root: Path) -> str:
    """A folder holding a ``torch`` that fails on import, to put ahead of the real one."""
    (root / "blocked" / "torch").mkdir(parents=True)
    (root / "blocked" / "torch" / "__init__.py").write_text(
        "raise ImportError('the staging step imported torch')\n"
    )
    return str(root / "blocked")


def run_step(
    which: str, doc: dict[str, object], root: Path, path: str
) -> subprocess.CompletedProcess[str]:
    """One container of the staging Job as its own process, with ``path`` first on its
    PYTHONPATH."""
    env = {
        **os.environ,
        "MODELDEPLOY_DEPLOYMENT": json.dumps(doc),
        "PYTHONPATH": os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")])),
    }
    args = ["--step", which, "--inputs", str(root / "inputs"), "--staged", str(root / "staged")]
    if which != "build":
        args += ["--dest", str(root / "store")]
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "stage", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip


def step(which: str, doc: dict[str, object], root: Path, path: str) -> dict[str, object]:
    """``run_step``'s JSON summary; the step must succeed."""
    done = run_step(which, doc, root, path)
    assert done.returncode == 0, done.stdout + done.stderr
    summary: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def test_an_onnx_model_is_built_and_published_where_torch_cannot_be_imported(
    tmp_path: Path,
) -> None:
    blocked = blocked_torch(tmp_path)
    source = graphs.dtypes(tmp_path / "dtypes.onnx")
    doc = graphs.dtypes_deployment(f"file://{source}")
    assert step("fetch", doc, tmp_path, blocked)["cacheHit"] is False
    assert step("build", doc, tmp_path, blocked)["status"] == "Built"
    published = step("publish", doc, tmp_path, blocked)
    key = StagingPlan.read(tmp_path / "inputs").key
    assert (tmp_path / "staged" / key / "dtypes" / "1" / "model.onnx").is_file()
    assert str(published["uri"]).rstrip("/").endswith(key), published


@pytest.mark.staging  # builds the TorchScript model with PyTorch
def test_a_torchscript_models_build_fails_behind_the_same_block(tmp_path: Path) -> None:
    """The block is real: a TorchScript model's build does import torch, and fails."""
    from tests.support.demo_model import build_digits_model

    blocked = blocked_torch(tmp_path)
    model = build_digits_model(tmp_path / "model.pt")
    doc = {
        "apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "digits"},
        "spec": {"model": {"uri": f"file://{model}", "format": "torchscript",
                           "inputs": [{"name": "image", "shape": [1, 8, 8]}]}},
    }  # fmt: skip
    step("fetch", doc, tmp_path, blocked)
    done = run_step("build", doc, tmp_path, blocked)
    assert done.returncode != 0
    assert "the staging step imported torch" in done.stdout + done.stderr
