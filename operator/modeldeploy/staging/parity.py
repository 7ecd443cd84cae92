"""Numerical parity between the source PyTorch model and the final ONNX graph.

Both run on the same seeded samples (plus calibration samples, when given): PyTorch eager in
``inference_mode``, the graph under onnxruntime on CPU. The gate is ``numpy.allclose``'s rule
for every output element, |onnx - torch| <= atol + rtol * |torch|, and, for classifier-shaped
outputs ([batch, classes]), the share of samples whose arg-max agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.api.model import TensorSpec
from modeldeploy.api.optimization import Parity
from modeldeploy.artifacts.golden import excess
from modeldeploy.staging.samples import Batch, split

CHUNK = 16


@dataclass(frozen=True)
class ParityReport:
    """The figures the gate was decided on; goes into the manifest and the status."""

    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float | None
    samples: int
    passed: bool
    failures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "maxAbsDiff": self.max_abs_diff,
            "maxRelDiff": self.max_rel_diff,
            "top1Agreement": self.top1_agreement,
            "samples": self.samples,
            "passed": self.passed,
        }


def run_torch(module: Any, inputs: list[TensorSpec], batch: Batch) -> list[np.ndarray]:
    import torch

    chunks: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for part in split(batch, CHUNK):
            out = module(*(torch.from_numpy(np.ascontiguousarray(part[s.name])) for s in inputs))
            outs = [out] if isinstance(out, torch.Tensor) else list(out)
            chunks.append([o.float().numpy() for o in outs])
    return [np.concatenate(c) for c in zip(*chunks, strict=True)]


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, batch: Batch) -> list[np.ndarray]:
    chunks = [session.run(None, part) for part in split(batch, CHUNK)]
    return [np.concatenate(c).astype(np.float32) for c in zip(*chunks, strict=True)]


def compare(
    reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str], tolerance: Parity
) -> ParityReport:
    """Decide the gate. ``reference`` is PyTorch's answer, ``candidate`` the graph's."""
    max_abs = max_rel = 0.0
    failures: list[str] = []
    for name, ref, got in zip(names, reference, candidate, strict=True):
        if ref.shape != got.shape:
            failures.append(
                f"output {name!r} has shape {list(got.shape)}, PyTorch gives {list(ref.shape)}"
            )
            continue
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        scale = np.abs(ref.astype(np.float64))
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float((diff / np.maximum(scale, 1e-6)).max(initial=0.0)))
        beyond = excess(got, ref, tolerance.atol, tolerance.rtol)
        if (beyond > 0).any():
            worst = np.unravel_index(int(np.argmax(beyond)), beyond.shape)
            failures.append(
                f"output {name!r}: {int((beyond > 0).sum())} of {beyond.size} values outside "
                f"atol {tolerance.atol:g} + rtol {tolerance.rtol:g}·|ref|; worst at {list(map(int, worst))}: "
                f"|Δ| {float(diff[worst]):.6g} vs allowed {float(tolerance.atol + tolerance.rtol * scale[worst]):.6g}"
            )
    top1 = None
    ref0, got0 = reference[0], candidate[0]
    if ref0.ndim == 2 and ref0.shape[1] > 1 and ref0.shape == got0.shape:
        top1 = float((ref0.argmax(axis=1) == got0.argmax(axis=1)).mean())
        if top1 < tolerance.min_top1_agreement:
            failures.append(
                f"top-1 agreement {top1:.4f} < minTop1Agreement {tolerance.min_top1_agreement:g}"
            )
    return ParityReport(
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        top1_agreement=top1,
        samples=len(ref0),
        passed=not failures,
        failures=tuple(failures),
    )
