"""Golden samples: the bounded reader, and the one tolerance comparison.

``golden.npz`` holds sample inputs and the verified graph's outputs for them. The runtime
replays them at start-up (its self-test), the operator sends them to a canary (live parity),
and staging's parity gate compares PyTorch with the graph. All three judge with
:func:`excess`: an element passes when ``|got - want| <= atol + rtol * |want|``.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from modeldeploy.artifacts.errors import ArtifactError

INPUT, OUTPUT = "input:", "output:"
"""Prefixes of the arrays' names in ``golden.npz``: ``input:image``, ``output:logits``."""

GOLDEN_MAX_BYTES = 64 * 1024 * 1024
"""Most bytes the golden samples may hold, compressed or not: what the operator (shared by every
namespace) and the runtime will ever allocate for a tenant's ``golden.npz``."""
GOLDEN_MAX_ARRAYS = 64


def golden_arrays(
    source: Path | BinaryIO, max_bytes: int = GOLDEN_MAX_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The golden inputs and outputs of a ``golden.npz``: plain arrays only (never unpickled),
    and at most ``max_bytes`` of them. Each array's size is read from its ``.npy`` header before
    anything is decompressed, and exactly that many bytes are read, so a deflate bomb is refused
    for what it declares and can never make this allocate more."""
    arrays: dict[str, np.ndarray] = {}
    used = 0
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > GOLDEN_MAX_ARRAYS:
                raise ArtifactError(
                    f"golden.npz holds {len(members)} arrays, more than {GOLDEN_MAX_ARRAYS}"
                )
            for member in members:
                name = member.filename.removesuffix(".npy")
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
                    else:
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
                    if dtype.hasobject:
                        raise ArtifactError(f"golden.npz: {name} holds Python objects")
                    size = math.prod(shape) * dtype.itemsize
                    used += size
                    if used > max_bytes:
                        raise ArtifactError(
                            f"golden.npz: {name} {tuple(shape)} {dtype} would make the golden "
                            f"samples {used} bytes, more than {max_bytes}"
                        )
                    data = stream.read(size)
                if len(data) != size:
                    raise ArtifactError(f"golden.npz: {name} is cut short")
                flat = np.frombuffer(data, dtype)
                arrays[name] = flat.reshape(shape, order="F") if fortran else flat.reshape(shape)
    except (zipfile.BadZipFile, ValueError, EOFError) as err:
        raise ArtifactError(f"golden.npz is not a plain .npz of arrays: {err}") from err
    inputs = {k.removeprefix(INPUT): v for k, v in arrays.items() if k.startswith(INPUT)}
    outputs = {k.removeprefix(OUTPUT): v for k, v in arrays.items() if k.startswith(OUTPUT)}
    return inputs, outputs


def write_golden(
    path: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], count: int
) -> int:
    """Store the first ``count`` samples and the verified graph's answers; how many."""
    n = min(count, len(next(iter(outputs.values()))))
    arrays = {f"{INPUT}{k}": v[:n] for k, v in inputs.items()}
    arrays.update({f"{OUTPUT}{k}": v[:n] for k, v in outputs.items()})
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return n


def excess(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """How far each element of ``got`` is beyond ``atol + rtol * |want|`` (> 0 fails), in
    float64."""
    want64 = want.astype(np.float64)
    return np.abs(got.astype(np.float64) - want64) - (atol + rtol * np.abs(want64))


@dataclass(frozen=True)
class Agreement:
    """Outputs compared with their reference: the largest |difference|, and what failed."""

    worst: float
    failures: tuple[str, ...]


def agree(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], atol: float, rtol: float, of: str
) -> Agreement:
    """Compare every output in ``want`` with ``got``; ``of`` names the reference in messages
    (``golden``, ``ref``)."""
    worst, failures = 0.0, []
    for name, expected in want.items():
        served = got.get(name)
        if served is None or served.shape != expected.shape:
            shape = None if served is None else list(served.shape)
            failures.append(f"output {name!r} has shape {shape}, {of} {list(expected.shape)}")
            continue
        diff = np.abs(served.astype(np.float64) - expected.astype(np.float64))
        largest = float(diff.max(initial=0.0))
        if math.isfinite(largest):
            worst = max(worst, largest)
        # NaN compares false with everything: without this, a NaN answer would pass.
        if not math.isfinite(largest) or (excess(served, expected, atol, rtol) > 0).any():
            failures.append(
                f"output {name!r}: max |Δ| {float(diff.max()):.6g} exceeds atol {atol:g} + "
                f"rtol {rtol:g}·|{of}|"
            )
    return Agreement(worst, tuple(failures))
