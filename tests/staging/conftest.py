"""Fixtures for the staging tests: real models trained here, and a real S3 server."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modeldeploy.api.modeldeployment import ModelDeployment
from modeldeploy.api.validation import parse
from tests.staging import models
from tests.support import Assets
from tests.support.s3 import S3Server

DIGIT_LABELS = [str(i) for i in range(10)]


@pytest.fixture(scope="session")
def digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return models.digits()


@pytest.fixture(scope="session")
def digits_cnn(digits_data: Any) -> models.DigitsCNN:
    x_train, _, y_train, _ = digits_data
    return models.train(models.DigitsCNN(), x_train, y_train, epochs=15)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def digits_mlp(digits_data: Any) -> models.DigitsMLP:
    x_train, _, y_train, _ = digits_data
    flat = x_train.reshape(len(x_train), -1)
    return models.train(models.DigitsMLP(), flat, y_train, epochs=15)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def files(
    tmp_path_factory: pytest.TempPathFactory, digits_cnn: Any, digits_mlp: Any, digits_data: Any
) -> Path:
    """Saved models and calibration data, as a user would hand them over."""
    root = tmp_path_factory.mktemp("sources")
    x_train = digits_data[0]
    models.save(digits_cnn, root / "cnn.pt")
    models.save(digits_mlp.state_dict(), root / "mlp-weights.pt")
    models.save(digits_mlp, root / "mlp.pt")
    np.savez(root / "calibration.npz", image=x_train[:256])
    resnet = models.build_resnet18(num_classes=10).eval()
    models.save(resnet, root / "resnet18.pt")
    models.save(resnet.state_dict(), root / "resnet18-weights.pt")
    torch.jit.save(torch.jit.script(resnet), str(root / "resnet18.torchscript"))
    return root


def deployment(name: str, uri: str, inputs: list[dict[str, Any]], **spec: Any) -> ModelDeployment:
    """A ModelDeployment for ``uri``; ``spec`` entries are merged into the spec."""
    doc: dict[str, Any] = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": {"uri": uri, "format": "pytorch", "inputs": inputs}},
    }
    for key, value in spec.items():
        target = doc["spec"].setdefault(key, {})
        target.update(copy.deepcopy(value))
    return parse(doc)


def digits_deployment(uri: str, precision: str = "fp32", **extra: Any) -> ModelDeployment:
    optimization: dict[str, Any] = {"precision": precision, **extra.pop("optimization", {})}
    return deployment(
        "digits",
        uri,
        [{"name": "image", "shape": [1, 8, 8]}],
        model={
            "preprocessing": {"scale": 1 / 16},  # raw 0..16 pixels in, as the model was trained
            "postprocessing": {
                "type": "classification",
                "classification": {"labels": DIGIT_LABELS},
            },
            **extra.pop("model", {}),
        },
        optimization=optimization,
        **extra,
    )


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3"), Assets.provide())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3
