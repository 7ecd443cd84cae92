"""PyTorch (eager or TorchScript) → ONNX, with a dynamic batch axis, checked by onnx.checker."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modeldeploy.api.model import (
    TensorSpec,
)
from modeldeploy.staging.errors import ExportError, InputMismatchError
from modeldeploy.staging.samples import Batch

if TYPE_CHECKING:  # imported where used: an ONNX model's build never loads PyTorch (3 s of CPU)
    import torch


def output_names(module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> list[str]:
    import torch

    try:
        with torch.inference_mode():
            out = module(*example)
    except Exception as err:  # the tenant's forward() on the declared inputs: anything goes
        declared = ", ".join(f"{list(t.shape)} {t.dtype}" for t in example)
        first = str(err).strip().splitlines()[0][:500] if str(err).strip() else type(err).__name__
        raise InputMismatchError(
            f"the model rejects the declared inputs ({declared}, batch first): {first}"
        ) from err
    if isinstance(out, torch.Tensor):
        return ["output"]
    if isinstance(out, (tuple, list)) and all(isinstance(o, torch.Tensor) for o in out):
        return [f"output_{i}" for i in range(len(out))]
    raise ExportError(
        f"the model returns a {type(out).__name__}; only tensors or tuples of tensors can be served"
    )


def export_onnx(
    module: torch.nn.Module, inputs: list[TensorSpec], example: Batch, opset: int, path: Path
) -> list[str]:
    """Write ``module`` as ONNX at ``path``; returns the output names. Checks the graph."""
    import onnx
    import torch

    tensors = tuple(torch.from_numpy(np.ascontiguousarray(example[s.name])) for s in inputs)
    outputs = output_names(module, tensors)
    dynamic_axes: dict[str, dict[int, str]] = {}
    for spec in inputs:
        axes = {0: "batch"}
        axes.update({i + 1: f"{spec.name}_dim{i + 1}" for i, d in enumerate(spec.shape) if d == -1})
        dynamic_axes[spec.name] = axes
    for name in outputs:
        dynamic_axes[name] = {0: "batch"}
    try:
        # no_grad, not inference_mode: the tracer must be able to record the tensors it sees.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tensors,
                str(path),
                input_names=[s.name for s in inputs],
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as err:
        raise ExportError(f"ONNX export (opset {opset}) failed: {err}".strip()) from err
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:
        raise ExportError(f"exported graph fails onnx.checker: {err}") from err
    return outputs
