"""Seeded model inputs for export, parity, calibration fallbacks and golden samples.

Numbers are drawn to look like what clients send: raw pixels (0..1/scale) when pre-processing
is baked into the graph, standard normal floats otherwise, 0/1 for integer inputs (safe as token
ids and masks for any vocabulary). Real calibration data, when given, is used as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modeldeploy.api.model import DataType, Preprocessing, TensorSpec

DYNAMIC_DIM = 8
"""The size used for a -1 (dynamic) per-sample dimension."""

NUMPY_DTYPES: dict[DataType, type[np.generic]] = {
    DataType.FP32: np.float32,
    DataType.FP16: np.float16,
    DataType.INT64: np.int64,
    DataType.INT32: np.int32,
    DataType.INT8: np.int8,
    DataType.UINT8: np.uint8,
    DataType.BOOL: np.bool_,
}

Batch = dict[str, np.ndarray]


def sample_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    return (batch, *(DYNAMIC_DIM if d == -1 else d for d in spec.shape))


def random_batch(
    inputs: list[TensorSpec], batch: int, seed: int, preprocessing: Preprocessing | None = None
) -> Batch:
    """One batch of ``batch`` samples for every input, the same for the same seed."""
    rng = np.random.default_rng(seed)
    out: Batch = {}
    for i, spec in enumerate(inputs):
        shape = sample_shape(spec, batch)
        dtype = NUMPY_DTYPES[spec.dtype]
        if spec.dtype in (DataType.FP32, DataType.FP16):
            if preprocessing is not None and i == 0:
                values = rng.uniform(0.0, 1.0 / preprocessing.scale, size=shape)
            else:
                values = rng.standard_normal(size=shape)
            out[spec.name] = values.astype(dtype)
        elif spec.dtype == DataType.BOOL:
            out[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            out[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return out


def load_calibration(path: Path, inputs: list[TensorSpec], limit: int) -> Batch:
    """Calibration samples from a .npz keyed by input name, cut to ``limit`` samples."""
    with np.load(path) as data:
        missing = [s.name for s in inputs if s.name not in data]
        if missing:
            raise ValueError(
                f"calibration file {path.name} lacks inputs {missing}; has {list(data)}"
            )
        return {
            s.name: np.asarray(data[s.name][:limit], dtype=NUMPY_DTYPES[s.dtype]) for s in inputs
        }


def split(batch: Batch, size: int) -> list[Batch]:
    """Cut a batch into batches of at most ``size`` samples."""
    n = len(next(iter(batch.values())))
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]
