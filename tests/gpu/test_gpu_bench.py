"""The GPU benchmark's dry run on CPU: the same bundle, transfer and script as the device run.

A device call sees the repository's tracked files plus the paths it carries, and nothing we
installed. These tests build a tiny bundle with ``modeldeploy stage``, cut it into parts, and
make every device call ``gpu_transfer.calls`` prints, in order, each in a fresh folder holding
only the repository's code and that call's carried path, with imports of everything the GPU
machine lacks made to fail. The benchmark there runs on the CPU execution provider.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bench import gpu_bundle, gpu_models, gpu_transfer
from tests.support.controlplane import REPO_ROOT

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests

# What the GPU machine's image does not have (its list is in the device tool's KINDS.md), and
# the parts of ours that would pull them in. The benchmark must not import any of them.
ABSENT_THERE = (
    "pydantic",
    "kserve",
    "tritonclient",
    "kubernetes",
    "boto3",
    "modeldeploy.api",
    "modeldeploy.staging",
    "modeldeploy.controller",
    "tests.support",
)

BLOCKER = f"""
import importlib.abc, sys
ABSENT = {ABSENT_THERE!r}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == a or name.startswith(a + ".") for a in ABSENT):
            raise ModuleNotFoundError(f"{{name}} is not on the GPU machine", name=name)
        return None
sys.meta_path.insert(0, Absent())
"""


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bundle, staged for real, cut into parts small enough to need several calls."""
    local = tmp_path_factory.mktemp("local") / ".gpu"
    tar_path = gpu_bundle.build(local, tiny=True, wheel=False)
    index = gpu_transfer.split(tar_path, local, 96 * 1024)
    assert len(index["parts"]) >= 3  # type: ignore[arg-type]
    return local


def device_call(call: gpu_transfer.DeviceCall, local: Path, root: Path, out: Path) -> str:
    """Run one call as the device tool would: code plus carried paths, nothing else of ours."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "operator" / "modeldeploy", root / "operator" / "modeldeploy")
    shutil.copytree(
        REPO_ROOT / "tests",
        root / "tests",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for carried in call.carry:
        target = root / carried
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local / Path(carried).name, target)
    site = root / "_blocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(root),
        "OUT": str(out),
        "PYTHONPATH": str(site),
        "PYTHONNOUSERSITE": "1",
    }
    done = subprocess.run(
        ["bash", "-c", call.command],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{call.command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_every_device_call_in_order_ends_in_a_report_within_tolerance(
    parts: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    calls = gpu_transfer.calls(
        parts,
        str(remote),
        python=Path(sys.executable).name,
        bench_args="--provider cpu --batches 1,4 --concurrency 1,8 --seconds 0.2",
        carried_as=".gpu",
    )
    index = json.loads((parts / gpu_transfer.INDEX).read_text())
    assert len(calls) == len(index["parts"]) + 1
    assert all(len(c.carry) == 1 and c.carry[0].startswith(".gpu/") for c in calls)
    out = tmp_path / "out"
    for call in calls:
        stdout = device_call(call, parts, tmp_path / "device", out)

    report = json.loads((out / "gpu-bench.json").read_text())
    text = (out / "gpu-bench.md").read_text()
    assert text in stdout
    assert (out / "bench-gpu.log").read_text().strip()
    env = report["environment"]
    assert env["provider"] == "CPUExecutionProvider"
    assert env["runtime_choice"][-1] == "CPUExecutionProvider"
    assert env["tensorrt"].startswith("not in this onnxruntime build")
    # every staged artifact was checked against its own golden answers, and passed on CPU
    measured = {(p["model"].split(" ")[0], p["precision"]) for p in report["parity"]}
    assert measured == {
        ("ResNet-18", "fp32"),
        ("ResNet-18", "fp16"),
        ("ResNet-18", "int8"),
        ("text", "fp32"),
        ("text", "fp16"),
    }
    assert all(p["passed"] and p["samples"] > 0 for p in report["parity"]), report["parity"]
    # each precision at each batch size, for ORT and both eager variants
    assert len(report["rows"]) == 5 * 2
    assert all(r["ort_ms"] > 0 and r["eager_fp32_ms"] > 0 for r in report["rows"])
    # batching: with 8 callers the batcher really merged requests; alone it cannot
    by_callers = {b["concurrency"]: b for b in report["batching"]}
    assert set(by_callers) == {1, 8}
    assert by_callers[8]["mean_batch"] > 1.5
    assert by_callers[1]["mean_batch"] == 1.0
    assert "| ResNet-18 (3x32x32) | fp16 | 8 |" in text
    assert "parity within every artifact's tolerance: yes" in text


def test_a_rerun_of_the_bench_call_needs_no_transfer_but_a_lost_part_is_named(
    parts: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    index = json.loads((parts / gpu_transfer.INDEX).read_text())
    for p in index["parts"]:
        gpu_transfer.receive(parts / p["name"], remote)
    bundle = gpu_transfer.join(parts / gpu_transfer.INDEX, remote)
    assert (bundle / "bundle.json").exists()
    assert gpu_transfer.join(parts / gpu_transfer.INDEX, remote) == bundle  # parts were kept

    (remote / "part-001").unlink()
    with pytest.raises(gpu_transfer.TransferError, match=r"1 of \d+ parts missing .*part-001"):
        gpu_transfer.join(parts / gpu_transfer.INDEX, remote)
    gpu_transfer.receive(parts / "part-001", remote)
    (remote / "part-002").write_bytes(b"not the part")
    with pytest.raises(gpu_transfer.TransferError, match=r"part-002: sha256 .* carry that part"):
        gpu_transfer.join(parts / gpu_transfer.INDEX, remote)


def test_no_part_may_exceed_what_one_device_call_carries(tmp_path: Path) -> None:
    blob = tmp_path / "b.tar"
    blob.write_bytes(b"x")
    with pytest.raises(gpu_transfer.TransferError, match="must be 1 B to 62 MiB"):
        gpu_transfer.split(blob, tmp_path / "p", 63 * gpu_transfer.MIB)


def test_the_eager_resnet_is_torchvisions_resnet18_weight_for_weight() -> None:
    from torchvision.models import resnet18

    theirs = resnet18(weights=None, num_classes=10).eval()
    ours = gpu_models.ResNet18(num_classes=10).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32))
    with torch.inference_mode():
        assert torch.equal(ours(x), theirs(x))
