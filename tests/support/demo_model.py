"""The model ``make demo`` and the operator tests deploy: a small CNN trained on the spot on
scikit-learn's bundled 8x8 digits (nothing is downloaded), saved as TorchScript so that staging
needs none of this code to load it."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as float32 0..16 images [N, 1, 8, 8] and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32)[:, None], data.target.astype(np.int64)


def train(model: Any, x: np.ndarray, y: np.ndarray, epochs: int = 30, scale: float = 1 / 16) -> Any:
    """A few seconds of Adam on CPU; inputs scaled the way the spec's preprocessing will."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x) * scale, torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def build_digits_model(path: Path, epochs: int = 15, channels: int = 16) -> Path:
    """Train the CNN (a few seconds on CPU) and save it as TorchScript at ``path``."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels * 2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 2 * 4 * 4, 10),
    )
    x, y = digits()
    train(model, x, y, epochs=epochs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what loads anywhere
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(str(path))  # type: ignore[no-untyped-call]
    return path


def build_wide_model(path: Path) -> Path:
    """A model that wants 16x16 images ([N,1,16,16] → [N,10]): a "new version" that breaks
    every client still sending the digits model's 8x8 (the canary tests' erroring canary)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 10)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, torch.zeros(1, 1, 16, 16)).save(str(path))  # type: ignore[no-untyped-call]
    return path


def digit_png(index: int) -> tuple[bytes, str]:
    """One of the digits as a PNG (0..255 grey) and its true name."""
    from PIL import Image

    x, y = digits()
    pixels = (x[index, 0] * 255 / 16).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue(), DIGIT_NAMES[int(y[index])]
