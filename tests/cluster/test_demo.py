"""`make demo` does what the README says it does."""

from __future__ import annotations

import subprocess
import sys

from modeldeploy.testing.controlplane import REPO_ROOT


def test_demo_applies_the_examples_and_shows_a_refusal() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy.demo"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "modeldeployment.modeldeploy.io/resnet50 serverside-applied" in out
    assert "modeldeploy validate: spec.rollout.steps[1].weight: must be greater than 50" in out
    assert "spec.rollout.steps: Invalid value: step weights must be strictly increasing" in out
    table = out.split("== kubectl get mdep -A", 1)[1].splitlines()
    assert table[1].split()[:2] == ["NAMESPACE", "NAME"]
    assert {line.split()[1] for line in table[2:5]} == {
        "fraud-scorer",
        "minilm-embeddings",
        "resnet50",
    }
