"""The images `make images` built, run in real containers (podman with runc), locked down as the
chart and the ClusterServingRuntime run them: non-root, read-only root filesystem, no
capabilities, no new privileges, a tmpfs /tmp. Skipped, saying why, until `make images` has
built the image a test needs.

- the operator image answers ``modeldeploy version`` and holds neither torch nor onnxruntime;
- the staging image stages the digits model from a mounted folder into a mounted store, with
  no network at all;
- the runtime image holds no torch, serves that artifact, and answers a PNG sent through the
  port mapped to the host with tritonclient;
- the runtime image refuses an artifact whose ``model.onnx`` is not the manifest's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modeldeploy import __version__
from tests.runtime import graphs
from tests.support.controlplane import REPO_ROOT, free_port
from tests.support.demo_model import build_digits_model, digit_png
from tests.support.image_source import built_from_here

BUILT = REPO_ROOT / ".cache" / "images" / "built.json"
CONF = REPO_ROOT / "hack" / "images" / "containers.conf"
LOCKED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
          "--tmpfs", "/tmp:rw,size=512m"]  # fmt: skip

pytestmark = pytest.mark.images


def podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
    )  # fmt: skip


def image(name: str) -> str:
    """The tag `make images` built for ``name``; the test is skipped when there is none."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run `make images` (it installs it and builds)")
    built: dict[str, Any] = json.loads(BUILT.read_text()) if BUILT.exists() else {}
    tag = built.get(name, {}).get("tag")
    if tag is None:
        pytest.skip(f"no {name} image: run `make images` first")
    if podman("image", "exists", tag).returncode != 0:
        pytest.skip(f"{tag} is recorded in {BUILT} but not in podman's storage: run `make images`")
    if not built_from_here(tag, BUILT):
        pytest.skip(f"{tag} was built from other source than this checkout's: run `make images`")
    return str(tag)


def python_in(tag: str, code: str, user: str) -> str:
    result = podman("run", "--rm", "--network", "none", *LOCKED, "--user", user,
                    "--entrypoint", "python3", tag, "-c", code)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


FIND = "import importlib.util as u; print([m for m in {} if u.find_spec(m)])"


def test_the_operator_image_prints_its_version_and_holds_neither_torch_nor_onnxruntime() -> None:
    tag = image("operator")
    result = podman("run", "--rm", "--network", "none", *LOCKED, tag, "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__
    found = python_in(tag, FIND.format(("torch", "onnxruntime", "aiohttp")), "65532")
    assert found == "['aiohttp']"  # what the operator runs on, and nothing of staging's
    assert python_in(tag, "import os; print(os.getuid())", "65532") == "65532"
    config = json.loads(podman("image", "inspect", tag).stdout)[0]["Config"]
    assert config["User"] == "65532:65532"  # non-root without being told


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits model staged by the staging image: the artifact's folder in the store."""
    tag = image("staging")
    root = tmp_path_factory.mktemp("images")
    models, store = root / "models", root / "store"
    build_digits_model(models / "model.pt")
    doc = yaml.safe_load((REPO_ROOT / "examples" / "digits-cpu.yaml").read_text())
    doc["spec"]["model"]["uri"] = "file:///models/model.pt"
    (root / "spec.yaml").write_text(yaml.safe_dump(doc))
    store.mkdir()
    store.chmod(0o777)  # written by uid 1000, as the staging Job runs it
    result = podman(
        "run", "--rm", "--network", "none", *LOCKED, "--user", "1000:1000",
        "-v", f"{models}:/models:ro", "-v", f"{root / 'spec.yaml'}:/spec.yaml:ro",
        "-v", f"{store}:/store", tag, "stage", "/spec.yaml", "--dest", "/store",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["uri"] == f"file:///store/{summary['key']}"
    assert summary["parity"]["passed"] is True
    return store / summary["key"]


def test_the_staging_image_stages_the_digits_model_with_no_network_as_non_root(
    artifact: Path,
) -> None:
    manifest = json.loads((artifact / "digits" / "modeldeploy.json").read_text())
    assert manifest["key"] == artifact.name
    assert (artifact / "digits" / "1" / "model.onnx").stat().st_uid == 1000
    assert python_in(image("staging"), FIND.format(("torch", "onnxruntime")), "1000") == (
        "['torch', 'onnxruntime']"
    )


@pytest.fixture
def served(artifact: Path) -> Iterator[str]:
    """The runtime image serving ``artifact``; its REST address on the host."""
    tag = image("runtime")
    port, name = free_port(), f"md-runtime-{os.getpid()}-{free_port()}"
    result = podman(
        "run", "-d", "--name", name, *LOCKED, "--user", "1000:1000",
        "-p", f"127.0.0.1:{port}:8080", "-v", f"{artifact}:/mnt/models:ro", tag,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                    break
            except OSError as err:
                running = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
                if running != "true" or time.monotonic() > deadline:
                    logs = podman("logs", name)
                    raise AssertionError(f"not ready: {err}\n{logs.stdout[-2000:]}") from err
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        podman("rm", "-f", name)


def test_the_runtime_image_serves_the_artifact_and_answers_a_png_through_the_mapped_port(
    served: str,
) -> None:
    import tritonclient.http as httpclient

    triton = httpclient.InferenceServerClient(served)
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    right = 0
    for index in range(10):
        png, truth = digit_png(index)
        item = httpclient.InferInput("image", [1], "BYTES")
        item.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
        result = triton.infer("digits", [item], outputs=[httpclient.InferRequestedOutput("labels")])
        top = result.as_numpy("labels")[0, 0].decode()
        assert top in labels
        right += top == truth
    assert right >= 8  # the trained CNN, through the image's own decoding and top-k


def test_the_runtime_image_holds_no_torch() -> None:
    assert python_in(image("runtime"), FIND.format(("torch", "onnxruntime")), "1000") == (
        "['onnxruntime']"
    )


def test_the_runtime_image_refuses_a_graph_that_is_not_the_manifests(
    artifact: Path, tmp_path: Path
) -> None:
    tag = image("runtime")
    planted = tmp_path / "planted"
    shutil.copytree(artifact, planted)
    graphs.slow(planted / "digits" / "1" / "model.onnx")
    planted.chmod(0o755)
    result = podman("run", "--rm", "--network", "none", *LOCKED, "--user", "1000:1000",
                    "-v", f"{planted}:/mnt/models:ro", tag, timeout=120)  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cannot serve: /mnt/models/digits/1/model.onnx has sha256:")
    assert last.endswith("it was changed after staging verified it")


def test_the_built_tags_are_the_ones_the_chart_and_the_runtime_yaml_name() -> None:
    from tests.chart.test_versions import referenced_images

    if not BUILT.exists():
        pytest.skip("no images built: run `make images` first")
    built = {v["tag"] for v in json.loads(BUILT.read_text()).values()}
    assert built == referenced_images()
