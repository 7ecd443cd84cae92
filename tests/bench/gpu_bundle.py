"""Build what the GPU benchmark carries: staged artifacts, eager weights and the ORT GPU wheel.

Everything is made here, where ``modeldeploy stage`` runs, and nothing is staged on the device:
the timed graphs are exactly the artifacts the operator would serve.

- ResNet-18 (3x224x224, random weights, ImageNet normalisation baked in) at FP32, FP16 and
  INT8 (static QDQ, calibrated);
- a BERT-style text encoder (INT64 ids [128]) at FP32 and FP16: a second architecture whose work
  is matrix products and attention, not convolutions;
- their ``state_dict``s for torch eager on the same weights (``gpu_models.py`` defines them);
- ``onnxruntime-gpu`` for CPython 3.12 (the device's Python), fetched with ``pip download``.

``bundle.json`` at the top lists each model: its architecture and config, input, and the folder
of each precision. The bundle is tarred and cut into parts by ``gpu_transfer``.

    python -m tests.bench.gpu_bundle .gpu            # the real bundle, then the device calls
    python -m tests.bench.gpu_bundle .gpu --tiny --no-wheel   # what the CPU dry run uses
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeldeploy.api.validation import parse
from modeldeploy.staging.stage import stage
from tests.bench import gpu_models, gpu_transfer

ORT_GPU = "onnxruntime-gpu==1.31.1"  # CUDA 13 builds, as the device's torch (cu130) is
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")

# Sizes: the real benchmark, and the tiny one the CPU dry run stages in seconds.
RESNET = {"real": {"width": 64, "num_classes": 1000, "side": 224}, "tiny": {"width": 8, "num_classes": 10, "side": 32}}  # fmt: skip
ENCODER = {"real": {"vocab": 8192, "seq": 128, "dim": 256, "layers": 4, "heads": 4, "classes": 16}, "tiny": {"vocab": 64, "seq": 16, "dim": 32, "layers": 2, "heads": 2, "classes": 4}}  # fmt: skip


def _spec(
    name: str, source: Path, inputs: list[dict[str, Any]], optimization: dict[str, Any], pre: Any
) -> Any:
    model: dict[str, Any] = {"uri": f"file://{source}", "format": "pytorch", "inputs": inputs}
    if pre:
        model["preprocessing"] = pre
    return parse(
        {
            "apiVersion": "modeldeploy.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {"model": model, "optimization": optimization},
        }
    )


def _stage_all(
    name: str,
    model: torch.nn.Module,
    root: Path,
    inputs: list[dict[str, Any]],
    precisions: dict[str, dict[str, Any]],
    pre: Any = None,
) -> dict[str, str]:
    """Stage ``model`` once per precision; the model folder of each, relative to ``root``."""
    source = root / "sources" / f"{name}.pt"
    source.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, source)
    folders = {}
    for precision, optimization in precisions.items():
        result = stage(
            _spec(name, source, inputs, {"precision": precision, **optimization}, pre),
            str(root / "store"),
        )
        folder = Path(result.uri.removeprefix("file://")) / name
        folders[precision] = str(folder.relative_to(root))
    return folders


def build(into: Path, tiny: bool = False, wheel: bool = True) -> Path:
    """Stage and collect everything under ``into/bundle``; returns ``into/bundle.tar``."""
    size = "tiny" if tiny else "real"
    into = into.resolve()  # staging takes file:/// URIs
    root = into / "bundle"
    shutil.rmtree(root, ignore_errors=True)
    (root / "weights").mkdir(parents=True)
    models: list[dict[str, Any]] = []

    torch.manual_seed(0)
    r = RESNET[size]
    resnet = gpu_models.ResNet18(r["num_classes"], r["width"]).eval()
    side = r["side"]
    calibration = into / "resnet-calibration.npz"
    rng = np.random.default_rng(0)
    np.savez(calibration, image=rng.uniform(0, 255, (32, 3, side, side)).astype(np.float32))
    fp16 = {"parity": {"samples": 8, "atol": 2e-2, "rtol": 2e-2}}
    folders = _stage_all(
        "resnet18",
        resnet,
        root,
        [{"name": "image", "shape": [3, side, side]}],
        {
            "fp32": {"parity": {"samples": 8}},
            "fp16": fp16,
            "int8": {
                "quantization": {
                    "mode": "static",
                    "calibration": {"uri": f"file://{calibration}", "samples": 32},
                },
                # Random weights make a poor INT8 model; the GPU run checks the CUDA EP against
                # the artifact's own golden answers at whatever tolerance staging stored.
                "parity": {"samples": 8, "atol": 10.0, "rtol": 10.0, "minTop1Agreement": 0.0},
            },
        },
        pre={
            "scale": 1 / 255,
            "mean": list(gpu_models.IMAGENET_MEAN),
            "std": list(gpu_models.IMAGENET_STD),
        },
    )
    torch.save(resnet.state_dict(), root / "weights" / "resnet18.pt")
    models.append(
        {
            "name": "resnet18",
            "label": f"ResNet-18 (3x{side}x{side})",
            "arch": "resnet18",
            "config": {"num_classes": r["num_classes"], "width": r["width"]},
            "input": {"name": "image", "shape": [3, side, side], "dtype": "float32", "high": 255},
            "weights": "weights/resnet18.pt",
            "artifacts": folders,
        }
    )

    e = ENCODER[size]
    encoder = gpu_models.TextEncoder(**e).eval()
    folders = _stage_all(
        "encoder",
        encoder,
        root,
        [{"name": "ids", "shape": [e["seq"]], "dtype": "INT64"}],
        {"fp32": {"parity": {"samples": 8}}, "fp16": fp16},
    )
    torch.save(encoder.state_dict(), root / "weights" / "encoder.pt")
    models.append(
        {
            "name": "encoder",
            "label": f"text encoder ({e['layers']}x{e['dim']}, seq {e['seq']})",
            "arch": "encoder",
            "config": e,
            "input": {"name": "ids", "shape": [e["seq"]], "dtype": "int64", "high": e["vocab"]},
            "weights": "weights/encoder.pt",
            "artifacts": folders,
        }
    )
    shutil.rmtree(root / "sources")  # pickles of tests' classes: no use on the device
    (root / "bundle.json").write_text(json.dumps({"size": size, "models": models}, indent=1))

    if wheel:
        (root / "wheels").mkdir()
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
            + ["--python-version", DEVICE_PYTHON, "--implementation", "cp"]
            + [arg for p in PLATFORMS for arg in ("--platform", p)]
            + ["-d", str(root / "wheels"), ORT_GPU],
            check=True,
        )
    tar_path = into / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(root, arcname="bundle")
    return tar_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.gpu_bundle")
    parser.add_argument("into", type=Path, help="a git-ignored folder of the repository: .gpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models (the CPU dry run)")
    parser.add_argument("--no-wheel", action="store_true", help="skip onnxruntime-gpu")
    parser.add_argument("--part-mib", type=float, default=60)
    args = parser.parse_args(argv)
    tar_path = build(args.into, args.tiny, not args.no_wheel)
    index = gpu_transfer.split(tar_path, args.into, int(args.part_mib * gpu_transfer.MIB))
    tar_path.unlink()
    parts = index["parts"]
    assert isinstance(parts, list)
    print(f"{index['bytes'] / gpu_transfer.MIB:.0f} MiB in {len(parts)} parts under {args.into}")
    print("device calls, in order (run them back to back; the machine stays warm 30 s):")
    for call in gpu_transfer.calls(args.into):
        print(json.dumps(call.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
