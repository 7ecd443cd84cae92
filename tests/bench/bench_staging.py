"""``make bench`` for staging: ONNX Runtime FP32 and INT8 against PyTorch eager, same CPU, one
process, batch 1 and 32, on ResNet-18 (224x224, random weights) and the trained digits CNN.

The artifacts are made by ``modeldeploy stage`` itself (INT8: static QDQ, calibrated), so what is
timed is exactly what would be served. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from modeldeploy.api.validation import parse
from modeldeploy.staging.stage import stage
from tests.bench.timing import timed
from tests.staging import models


def spec(
    name: str,
    uri: str,
    shape: list[int],
    precision: str,
    calibration: str | None,
    pre: dict[str, Any],
) -> Any:
    optimization: dict[str, Any] = {
        "precision": precision,
        "parity": {"samples": 8, "atol": 1e-3, "rtol": 1e-3},
    }
    if precision == "int8":
        optimization["quantization"] = {
            "mode": "static",
            "calibration": {"uri": calibration, "samples": 64},
        }
        optimization["parity"] = {"samples": 8, "atol": 10.0, "rtol": 10.0, "minTop1Agreement": 0.0}
    return parse(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {
                    "uri": uri,
                    "format": "pytorch",
                    "inputs": [{"name": "image", "shape": shape}],
                    "preprocessing": pre,
                },
                "optimization": optimization,
            },
        }
    )


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        x_train, _, y_train, _ = models.digits()
        cases = {
            "digits CNN (1x8x8)": (
                models.train(models.DigitsCNN(), x_train, y_train, epochs=15),
                [1, 8, 8],
                {"scale": 1 / 16},
                x_train[:64],
            ),
            "ResNet-18 (3x224x224)": (
                models.build_resnet18().eval(),
                [3, 224, 224],
                {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                np.random.default_rng(0).uniform(0, 255, size=(64, 3, 224, 224)).astype(np.float32),
            ),
        }
        for label, (model, shape, pre, calibration) in cases.items():
            source = models.save(model, root / f"{len(rows)}.pt")
            cal = root / f"{len(rows)}-cal.npz"
            np.savez(cal, image=calibration)
            sessions = {}
            for precision in ("fp32", "int8"):
                result = stage(
                    spec("bench", f"file://{source}", shape, precision, f"file://{cal}", pre),
                    str(root / "store"),
                )
                path = Path(result.uri.removeprefix("file://")) / "bench" / "1" / "model.onnx"
                sessions[precision] = ort.InferenceSession(
                    str(path), providers=["CPUExecutionProvider"]
                )
            a = pre["scale"]
            for batch in (1, 32):
                x = (
                    np.random.default_rng(batch)
                    .uniform(0, 1 / a, size=(batch, *shape))
                    .astype(np.float32)
                )
                mean = torch.tensor(pre.get("mean", [0.0])).view(1, -1, 1, 1)
                std = torch.tensor(pre.get("std", [1.0])).view(1, -1, 1, 1)
                xt = torch.from_numpy(x)

                def eager(
                    model: Any = model,
                    xt: torch.Tensor = xt,
                    mean: Any = mean,
                    std: Any = std,
                    a: float = a,
                ) -> Any:
                    with torch.inference_mode():
                        return model((xt * a - mean) / std)

                budget = 4.0 if batch == 1 else 8.0
                t_torch = timed(eager, budget)
                t_fp32 = timed(lambda s=sessions["fp32"], x=x: s.run(None, {"image": x}), budget)
                t_int8 = timed(lambda s=sessions["int8"], x=x: s.run(None, {"image": x}), budget)
                rows.append((label, batch, t_torch, t_fp32, t_int8))
    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}\n"
    )
    print(
        "| model | batch | torch eager ms | ORT FP32 ms | ORT INT8 ms | FP32 speed-up | INT8 speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, batch, t_torch, t_fp32, t_int8 in rows:
        print(
            f"| {label} | {batch} | {t_torch:.2f} | {t_fp32:.2f} | {t_int8:.2f} | "
            f"{t_torch / t_fp32:.2f}x | {t_torch / t_int8:.2f}x |"
        )


if __name__ == "__main__":
    main()
