"""Golden samples as tests tamper with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tamper_golden_outputs(store_dir: Path, key: str, model: str = "digits") -> None:
    """Shift the stored golden outputs of artifact ``key``: the canary's live answers no longer
    match them, as when a serving path silently diverges from what staging verified."""
    path = store_dir / key / model / "golden.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for k in arrays:
        if k.startswith("output:") and arrays[k].dtype.kind == "f":
            arrays[k] = arrays[k] + 1.0
    with path.open("wb") as out:
        np.savez(out, **arrays)
