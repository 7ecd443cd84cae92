"""The artifact store is written by staging pods, which run tenants' code. A graph planted in a
staged artifact, after staging verified the original against its parity gate, must not be
served: the runtime checks ``model.onnx`` against the manifest's sha256 before it loads it
(issue 16, item 4)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modeldeploy.staging.stage import stage
from tests.runtime import graphs
from tests.runtime.server import running
from tests.staging.conftest import deployment
from tests.support.controlplane import REPO_ROOT, free_port

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def staged_dtypes(root: Path) -> Path:
    source = graphs.dtypes(root / "dtypes.onnx")
    spec = deployment(
        "dtypes",
        f"file://{source}",
        [{"name": f"in_{t.lower()}", "shape": [graphs.WIDTH], "dtype": t} for t in graphs.DTYPES],
        model={"format": "onnx"},
    )
    return Path(stage(spec, str(root / "store")).uri.removeprefix("file://"))


def serve_once(artifact: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy", "serve", str(artifact),
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip


def test_a_graph_planted_in_a_staged_artifact_is_refused_before_it_is_loaded(
    tmp_path: Path,
) -> None:
    artifact = staged_dtypes(tmp_path)
    with running(artifact, tmp_path) as server:  # the genuine artifact serves
        assert server.get("/v2/health/ready")[0] == 200
    planted = tmp_path / "planted"
    shutil.copytree(artifact, planted)
    graphs.slow(planted / "dtypes" / "1" / "model.onnx")  # another valid graph, same path
    result = serve_once(planted)
    assert result.returncode == 3
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(
        f"cannot serve: {planted / 'dtypes' / '1' / 'model.onnx'} has sha256:"
    )
    assert message.endswith("it was changed after staging verified it")


def test_an_artifact_whose_manifest_declares_no_digest_is_refused(tmp_path: Path) -> None:
    import json

    artifact = staged_dtypes(tmp_path)
    manifest_path = artifact / "dtypes" / "modeldeploy.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["model"]["sha256"]
    manifest_path.write_text(json.dumps(manifest))
    result = serve_once(artifact)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        f"cannot serve: {manifest_path}: model.sha256: Field required"
    )
