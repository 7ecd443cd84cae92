"""`make demo` does what the README says it does, as CI runs it (DEMO_EXIT=1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.controlplane import REPO_ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.staging]  # make demo: both, for real


def test_demo_deploys_serves_and_refuses() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.demo"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=280,
        check=False,
        env={**os.environ, "DEMO_EXIT": "1"},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "digits-cpu.yaml: valid" in out
    assert "modeldeployment.modeldeploy.io/digits serverside-applied" in out
    # Progress through the conditions, in order, to Ready.
    staged = out.index("ArtifactReady  True     Staged")
    # StagingStarted, or already Staging when the Job's pod started before the printer looked.
    assert out.index("ArtifactReady  Unknown  Staging") < staged
    assert staged < out.index("Ready          True     InferenceServiceReady")
    # A real answer through the gateway, to the URL in KServe's status and to the
    # ModelDeployment's own: the handwritten seven is read as one, both times.
    gateway = r"\(through the gateway at http://127\.0\.0\.1:\d+\)"
    assert re.search(rf"to http://digits-demo\.example\.com/v2/models/digits/infer {gateway}", out)
    assert re.search(rf"to http://digits\.demo\.example\.com/v2/models/digits/infer {gateway}", out)
    assert len(re.findall(r"top-1: seven\s+(?:0\.9\d+|1\.0000)", out)) == 2, out
    assert len(re.findall(r"top-\d: ", out)) == 10
    # Through the real controllers: the Job controller's completed Job, KServe's Deployment.
    assert re.search(r"job\.batch/digits-stage-\w+\s+Complete\s+1/1", out)
    assert re.search(r"deployment\.apps/digits-predictor\s+1/1\s+1\s+1", out)
    table = out.split("== kubectl get mdep,isvc,deploy,pods -n demo", 1)[1].splitlines()
    assert table[1].split()[:7] == [
        "NAME", "READY", "REASON", "PRECISION", "TRAFFIC", "PHASE", "URL"
    ]  # fmt: skip
    assert table[2].split()[:5] == [  # no rollout yet: the Phase column is empty
        "modeldeployment.modeldeploy.io/digits",
        "True",
        "InferenceServiceReady",
        "fp32",
        "100/0",
    ]
    assert "modeldeploy validate: spec.rollout.steps[1].weight: must be greater than 50" in out
    assert "spec.rollout.steps: Invalid value: step weights must be strictly increasing" in out
    assert "the cluster, with the operator in it, is stopped" in out
    # The operator is the chart's: installed by helm, its pod run on the node.
    assert re.search(r"NAME: modeldeploy\nLAST DEPLOYED: .*\nNAMESPACE: modeldeploy-system\n"
                     r"STATUS: deployed", out)  # fmt: skip
    operator = out.split("== kubectl get deploy,pods -n modeldeploy-system (the operator", 1)[1]
    assert re.search(r"deployment\.apps/modeldeploy\s+1/1\s+1\s+1", operator)
    assert re.search(r"pod/modeldeploy-\w+-\w+\s+1/1\s+Running\s+0\s+\S+\s+10\.245\.", operator)
