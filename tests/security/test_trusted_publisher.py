"""The staging pod's step that runs the tenant's code (``stage``) holds no store, no claim and
no credentials: it can only leave files in its own output folder. What it leaves is published
by ``publish``, which runs none of the tenant's code, only after it has checked every file
against the plan ``fetch`` wrote and the spec (issue 16, item 4). Each test here is a tampering
a tenant's pickle could do at load time, run through the real ``modeldeploy stage --step``
processes, and refused with InvalidStagingResult, leaving nothing in the store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.validation import parse
from modeldeploy.artifacts.store import FolderStore, open_store
from modeldeploy.staging.plan import StagingPlan
from modeldeploy.staging.publish import verified
from modeldeploy.staging.stage import stage
from tests.runtime import graphs
from tests.support.controlplane import REPO_ROOT
from tests.support.demo_model import build_digits_model

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests

TRUSTED_ONLY = ("MODELDEPLOY_ARTIFACT_STORE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def spec_for(model: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    doc["spec"]["model"]["uri"] = f"file://{model}"
    return doc


def step(
    which: str, doc: dict[str, Any], inputs: Path, staged: Path, store: Path | None
) -> subprocess.CompletedProcess[str]:
    """One container of the staging Job, as its own process; ``stage`` (build) without any
    of the store's settings, as the Job runs it."""
    env = {k: v for k, v in os.environ.items() if k not in TRUSTED_ONLY}
    env["MODELDEPLOY_DEPLOYMENT"] = json.dumps(doc)
    args = ["--step", which, "--inputs", str(inputs), "--staged", str(staged)]
    if store is not None:
        args += ["--dest", str(store)]
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "stage", *args],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    """The spec, and the inputs and output folders after a genuine fetch and build."""
    root = tmp_path_factory.mktemp("publisher")
    doc = spec_for(build_digits_model(root / "model.pt"))
    inputs, staged = root / "inputs", root / "staged"
    fetched = step("fetch", doc, inputs, staged, root / "store")
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["cacheHit"] is False
    done = step("build", doc, inputs, staged, store=None)
    assert done.returncode == 0, done.stderr
    return doc, inputs, staged


def model_dir(staged: Path, inputs: Path) -> Path:
    return staged / StagingPlan.read(inputs).key / "digits"


def extra_file(folder: Path) -> str:
    (folder / "model.py").write_text("import os; os.system('id')\n")  # Triton's python backend
    return r"files \['digits/model.py'\] are not staging's"


def swapped_graph(folder: Path) -> str:
    graphs.slow(folder / "1" / "model.onnx")  # a valid graph, not the one the manifest names
    return r"digits/1/model.onnx is \d+ bytes; the manifest says \d+"


def resized_swap(folder: Path) -> str:
    graph = folder / "1" / "model.onnx"
    size = graph.stat().st_size
    data = bytearray(graph.read_bytes())
    data[size // 2] ^= 0xFF  # same size, other bytes: only the digest tells
    graph.write_bytes(bytes(data))
    return r"digits/1/model.onnx has sha256:[0-9a-f]{64}; the manifest says sha256:"


def forged_source(folder: Path) -> str:
    manifest = json.loads((folder / "modeldeploy.json").read_text())
    manifest["source"]["digest"] = "sha256:" + "0" * 64  # claims another source's artifact
    (folder / "modeldeploy.json").write_text(json.dumps(manifest))
    return r"source digest is 'sha256:0{64}', not 'sha256:"


def relabelled(folder: Path) -> str:
    (folder / "labels.txt").write_text("\n".join(["cat"] * 10) + "\n")
    return r"labels.txt is not the labels fetched for this run"


def python_backend(folder: Path) -> str:
    config = folder / "config.pbtxt"
    config.write_text(config.read_text().replace("onnxruntime_onnx", "python"))
    return r"config.pbtxt is not the one its manifest implies"


def linked_golden(folder: Path) -> str:
    (folder / "golden.npz").unlink()
    (folder / "golden.npz").symlink_to("/proc/self/environ")
    return r"digits/golden.npz is not a plain file or folder"


def bigger_batches(folder: Path) -> str:
    manifest = json.loads((folder / "modeldeploy.json").read_text())
    manifest["batching"]["maxBatchSize"] = 1024  # more than the spec allows the runtime
    (folder / "modeldeploy.json").write_text(json.dumps(manifest))
    return r"batching is"


@pytest.mark.parametrize(
    "tamper",
    [extra_file, swapped_graph, resized_swap, forged_source, relabelled, python_backend,
     linked_golden, bigger_batches],
)  # fmt: skip
def test_what_the_tenants_step_leaves_is_published_only_if_it_is_what_the_plan_implies(
    built: tuple[dict[str, Any], Path, Path], tmp_path: Path, tamper: Callable[[Path], str]
) -> None:
    doc, inputs, genuine = built
    staged = tmp_path / "staged"
    shutil.copytree(genuine, staged, symlinks=True)
    store = tmp_path / "store"
    expected = tamper(model_dir(staged, inputs))
    result = step("publish", doc, inputs, staged, store)
    assert result.returncode == 22, result.stderr
    summary = json.loads(result.stdout)
    assert summary["reason"] == "InvalidStagingResult"
    assert re.search(expected, summary["message"]), summary["message"]
    assert not store.exists() or not any(store.iterdir())  # nothing was published


def test_the_genuine_output_is_published_under_the_key_fetch_computed(
    built: tuple[dict[str, Any], Path, Path], tmp_path: Path
) -> None:
    doc, inputs, genuine = built
    store = tmp_path / "store"
    result = step("publish", doc, inputs, genuine, store)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    key = StagingPlan.read(inputs).key
    assert summary["uri"] == f"file://{store.resolve()}/{key}"
    assert summary["cacheHit"] is False
    plan = StagingPlan.read(inputs)
    assert verified(open_store(str(store)), key, parse(doc), plan) is not None


def test_a_tampered_artifact_in_the_store_is_no_cache_hit_and_is_replaced(
    tmp_path: Path,
) -> None:
    deployment = parse(spec_for(build_digits_model(tmp_path / "model.pt")))
    store = tmp_path / "store"
    first = stage(deployment, str(store))
    graph = store / first.key / "digits" / "1" / "model.onnx"
    planted = graphs.slow(graph).read_bytes()  # by someone who could write the store directly
    inputs = tmp_path / "inputs"
    fetched = step("fetch", deployment.to_manifest(), inputs, tmp_path / "out", store)
    assert json.loads(fetched.stdout) == {"status": "Fetched", "key": first.key, "cacheHit": False}
    assert "it is staged again and replaced" in fetched.stderr
    again = stage(deployment, str(store))
    assert (again.key, again.cache_hit) == (first.key, False)
    assert graph.read_bytes() != planted
    plan = StagingPlan.read(inputs)
    assert verified(FolderStore(store, f"file://{store}"), first.key, deployment, plan)
    # Verified now, the next run is a cache hit.
    assert stage(deployment, str(store)).cache_hit is True
