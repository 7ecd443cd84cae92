"""FP32, FP16 and INT8 artifacts from real trained models, judged on real held-out data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from modeldeploy.artifacts.manifest import read_manifest
from modeldeploy.staging.stage import StageResult, stage
from tests.staging import models
from tests.staging.conftest import deployment, digits_deployment

pytestmark = pytest.mark.staging  # stages or trains models with PyTorch in its tests


def artifact(result: StageResult, name: str) -> Path:
    return Path(result.uri.removeprefix("file://")) / name


def session(result: StageResult, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(artifact(result, name) / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )


def op_types(result: StageResult, name: str) -> set[str]:
    return {
        n.op_type for n in onnx.load(str(artifact(result, name) / "1" / "model.onnx")).graph.node
    }


def torch_accuracy(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, scale: float = 1 / 16
) -> float:
    with torch.inference_mode():
        return models.accuracy(lambda a: model(torch.from_numpy(a) * scale).numpy(), x, y)


def onnx_accuracy(sess: ort.InferenceSession, name: str, x: np.ndarray, y: np.ndarray) -> float:
    return models.accuracy(lambda a: sess.run(None, {name: a})[0], x, y)


def test_fp32_matches_pytorch_to_1e4(
    files: Path, tmp_path: Path, digits_cnn: Any, digits_data: Any
) -> None:
    result = stage(
        digits_deployment(
            f"file://{files / 'cnn.pt'}", optimization={"parity": {"atol": 1e-4, "rtol": 1e-4}}
        ),
        str(tmp_path),
    )
    assert result.parity is not None
    assert result.parity["passed"] is True
    assert result.parity["maxAbsDiff"] <= 1e-4
    assert result.parity["top1Agreement"] == 1.0
    # Pre-processing (x/16) and softmax are in the graph: raw pixels in, probabilities out.
    x_test = digits_data[1]
    probabilities = session(result, "digits").run(None, {"image": x_test})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    with torch.inference_mode():
        expected = torch.softmax(digits_cnn(torch.from_numpy(x_test) / 16), dim=-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_fp16_keeps_float32_io_and_stays_within_tolerance(
    files: Path, tmp_path: Path, digits_data: Any, digits_cnn: Any
) -> None:
    result = stage(
        digits_deployment(
            f"file://{files / 'cnn.pt'}",
            "fp16",
            optimization={"parity": {"atol": 5e-3, "rtol": 1e-2}},
        ),
        str(tmp_path),
    )
    assert result.parity is not None
    assert 0 < result.parity["maxAbsDiff"] <= 5e-3  # fp16 does change the numbers, a little
    sess = session(result, "digits")
    assert sess.get_inputs()[0].type == "tensor(float)"
    assert sess.get_outputs()[0].type == "tensor(float)"
    graph = onnx.load(str(artifact(result, "digits") / "1" / "model.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.graph.initializer)
    _, x_test, _, y_test = digits_data
    assert (
        onnx_accuracy(sess, "image", x_test, y_test)
        >= torch_accuracy(digits_cnn, x_test, y_test) - 0.005
    )


def test_int8_static_loses_at_most_one_point(
    files: Path, tmp_path: Path, digits_cnn: Any, digits_data: Any
) -> None:
    spec = digits_deployment(
        f"file://{files / 'cnn.pt'}",
        "int8",
        optimization={
            "quantization": {
                "mode": "static",
                "calibration": {"uri": f"file://{files / 'calibration.npz'}", "samples": 256},
            },
            "parity": {"atol": 0.1, "rtol": 0.5, "minTop1Agreement": 0.97},
        },
    )
    result = stage(spec, str(tmp_path))
    assert result.parity is not None
    assert result.parity["samples"] == 32 + 256  # seeded samples plus the calibration samples
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(result, "digits")
    _, x_test, _, y_test = digits_data
    before = torch_accuracy(digits_cnn, x_test, y_test)
    after = onnx_accuracy(session(result, "digits"), "image", x_test, y_test)
    assert before >= 0.95  # the model really learned the task
    assert before - after <= 0.01, f"int8 accuracy {after:.4f} vs fp32 {before:.4f}"
    # Without spec.monitoring.reference, the calibration data is the drift reference.
    folder = Path(result.uri.removeprefix("file://")) / "digits"
    reference = read_manifest(folder / "modeldeploy.json").reference
    assert reference is not None
    assert (reference.source, reference.samples) == ("calibration", 256)


def test_int8_dynamic_on_an_mlp_from_a_state_dict(
    files: Path, tmp_path: Path, digits_mlp: Any, digits_data: Any
) -> None:
    spec = deployment(
        "digits-mlp",
        f"file://{files / 'mlp-weights.pt'}",
        [{"name": "pixels", "shape": [64]}],
        model={
            "format": "state_dict",
            "entrypoint": "tests.staging.models:build_mlp",
            "entrypointArgs": {"hidden": 256},
        },
        optimization={
            "precision": "int8",
            "quantization": {"mode": "dynamic"},
            "parity": {"atol": 0.5, "rtol": 0.5, "minTop1Agreement": 0.95},
        },
    )
    result = stage(spec, str(tmp_path))
    assert "DynamicQuantizeLinear" in op_types(result, "digits-mlp") or "MatMulInteger" in op_types(
        result, "digits-mlp"
    )
    _, x_test, _, y_test = digits_data
    flat = x_test.reshape(len(x_test), -1)
    sess = session(result, "digits-mlp")
    before = torch_accuracy(digits_mlp, flat, y_test)
    after = models.accuracy(lambda a: sess.run(None, {"pixels": a / 16})[0], flat, y_test)
    assert before - after <= 0.01


def test_manifest_config_and_golden_samples(files: Path, tmp_path: Path) -> None:
    result = stage(
        digits_deployment(
            f"file://{files / 'cnn.pt'}",
            serving={
                "batching": {"maxBatchSize": 16, "maxQueueDelay": "3ms"},
                "resources": {"gpu": 1},
            },
        ),
        str(tmp_path),
    )
    folder = artifact(result, "digits")
    manifest = json.loads((folder / "modeldeploy.json").read_text())
    assert manifest["source"]["digest"] == result.digest
    assert manifest["model"]["sizeBytes"] == (folder / "1" / "model.onnx").stat().st_size
    assert manifest["signature"]["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
    ]
    assert manifest["signature"]["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [-1, 10]}
    ]
    assert manifest["preprocessing"]["bakedIntoGraph"] is True
    assert manifest["postprocessing"]["softmaxBakedIntoGraph"] is True
    assert (folder / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert set(manifest["tools"]) >= {"torch", "onnx", "onnxruntime", "modeldeploy"}
    config = (folder / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config
    assert "max_batch_size: 16" in config
    assert "max_queue_delay_microseconds: 3000" in config
    assert "kind: KIND_GPU" in config
    assert "dims: [ 1, 8, 8 ]" in config
    # Golden samples replay exactly through the stored graph.
    golden = np.load(folder / "golden.npz")
    assert manifest["golden"]["count"] == 4
    replay = session(result, "digits").run(None, {"image": golden["input:image"]})[0]
    np.testing.assert_allclose(replay, golden["output:output"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("source", ["pickle", "torchscript", "state_dict"])
def test_resnet18_through_every_pytorch_format(files: Path, tmp_path: Path, source: str) -> None:
    uri, model = {
        "pickle": ("resnet18.pt", {"format": "pytorch"}),
        "torchscript": ("resnet18.torchscript", {"format": "torchscript"}),
        "state_dict": (
            "resnet18-weights.pt",
            {
                "format": "state_dict",
                "entrypoint": "tests.staging.models:build_resnet18",
                "entrypointArgs": {"num_classes": 10},
            },
        ),
    }[source]
    spec = deployment(
        "resnet18",
        f"file://{files / uri}",
        [{"name": "image", "shape": [3, 64, 64]}],
        model={
            **model,
            "preprocessing": {
                "scale": 1 / 255,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            },
        },
        optimization={"parity": {"samples": 8, "atol": 1e-4, "rtol": 1e-3}},
    )
    result = stage(spec, str(tmp_path))
    assert result.parity is not None
    assert result.parity["passed"]
    # The same weights give the same graph answers whichever way they were saved.
    reference = models.build_resnet18(num_classes=10).eval()
    x = np.random.default_rng(1).uniform(0, 255, size=(2, 3, 64, 64)).astype(np.float32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = reference((torch.from_numpy(x) / 255 - mean) / std).numpy()
    got = session(result, "resnet18").run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
