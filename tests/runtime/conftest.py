"""Artifacts staged by the real staging code, and runtime processes serving them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeldeploy.staging.stage import stage
from tests.runtime import graphs
from tests.runtime.server import RuntimeProcess, running
from tests.staging import models
from tests.staging.conftest import DIGIT_LABELS, deployment


def staged(result_uri: str) -> Path:
    return Path(result_uri.removeprefix("file://"))


@pytest.fixture(scope="session")
def digits_model_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    x_train, x_test, y_train, y_test = models.digits()
    cnn = models.train(models.DigitsCNN(), x_train, y_train, epochs=15)
    path = models.save(cnn, tmp_path_factory.mktemp("runtime-src") / "cnn.pt")
    return path, (x_test, y_test)


@pytest.fixture(scope="session")
def digits_artifact(
    digits_model_file: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Raw 0..16 pixel tensors in, probabilities out; batching up to 32 rows, 5 ms delay."""
    spec = deployment(
        "digits",
        f"file://{digits_model_file[0]}",
        [{"name": "image", "shape": [1, 8, 8]}],
        model={
            "preprocessing": {"scale": 1 / 16},
            "postprocessing": {
                "type": "classification",
                "classification": {"labels": DIGIT_LABELS, "topK": 3},
            },
        },
        serving={"batching": {"maxBatchSize": 32, "maxQueueDelay": "5ms"}},
    )
    return staged(stage(spec, str(tmp_path_factory.mktemp("store"))).uri)


@pytest.fixture(scope="session")
def image_artifact(
    digits_model_file: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same CNN taking encoded images: 0..255 pixels resized to 8x8, scaled by 1/255."""
    spec = deployment(
        "digits-images",
        f"file://{digits_model_file[0]}",
        [{"name": "image", "shape": [1, 8, 8]}],
        model={
            "preprocessing": {"resize": {"height": 8, "width": 8}, "scale": 1 / 255},
            "postprocessing": {
                "type": "classification",
                "classification": {"labels": DIGIT_LABELS, "topK": 2},
            },
        },
        serving={"batching": {"maxBatchSize": 64}},
    )
    return staged(stage(spec, str(tmp_path_factory.mktemp("store"))).uri)


@pytest.fixture(scope="session")
def runtime(
    digits_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    with running(digits_artifact, tmp_path_factory.mktemp("logs")) as server:
        yield server


@pytest.fixture
def broken_artifact(digits_artifact: Path, tmp_path: Path) -> Path:
    """A copy whose stored golden outputs no longer match what the graph computes, as when a
    graph drifts on the hardware it lands on."""
    copy = tmp_path / "broken"
    shutil.copytree(digits_artifact, copy)
    golden = dict(np.load(copy / "digits" / "golden.npz"))
    golden["output:output"] = golden["output:output"] + 0.05
    np.savez(copy / "digits" / "golden.npz", **golden)
    manifest = json.loads((copy / "digits" / "modeldeploy.json").read_text())
    assert manifest["golden"]["atol"] < 0.05
    return copy


@pytest.fixture(scope="session")
def dtypes_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``graphs.dtypes``: one input and output per datatype, staged from ONNX."""
    source = graphs.dtypes(tmp_path_factory.mktemp("dtypes-src") / "dtypes.onnx")
    spec = deployment(
        "dtypes",
        f"file://{source}",
        [{"name": f"in_{t.lower()}", "shape": [graphs.WIDTH], "dtype": t} for t in graphs.DTYPES],
        model={"format": "onnx"},
    )
    return staged(stage(spec, str(tmp_path_factory.mktemp("store"))).uri)


@pytest.fixture(scope="session")
def slow_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``graphs.slow``: run time and failure chosen by the client. Batches up to 8 rows; at
    most 2 requests wait; a request's deadline is 1.5 s (all from the manifest)."""
    source = graphs.slow(tmp_path_factory.mktemp("slow-src") / "slow.onnx")
    spec = deployment(
        "slow",
        f"file://{source}",
        [{"name": "x", "shape": [1]}, {"name": "i", "shape": [1], "dtype": "INT64"}],
        model={"format": "onnx"},
        serving={
            "batching": {
                "maxBatchSize": 8,
                "maxQueueDelay": "5ms",
                "maxQueueSize": 2,
                "requestTimeout": "1500ms",
            }
        },
    )
    return staged(stage(spec, str(tmp_path_factory.mktemp("store"))).uri)
