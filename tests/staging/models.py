"""Small real models for the staging tests, built and trained in the tests (nothing downloaded).

They live in an importable module so that whole-module pickles of them can be loaded again,
as a user's own model classes would be from their package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tests.support import demo_model


class DigitsCNN(nn.Module):
    """A CNN for scikit-learn's 8x8 digits."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(channels * 2 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class DigitsMLP(nn.Module):
    """A Linear-only classifier on the flattened digits: the case for dynamic INT8."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_mlp(hidden: int = 256) -> DigitsMLP:
    """A state_dict entrypoint: pkg.module:factory with keyword arguments."""
    return DigitsMLP(hidden)


def build_resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised (no weights are downloaded)."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=num_classes)


class SignBranch(nn.Module):
    """Python control flow on the input: the exporter traces the branch its example input takes
    (a batch of 2) and bakes it in, so the graph is wrong for larger batches. The staging parity
    gate must catch it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if x.shape[0] <= 2:
            return y * 2.0
        return y - 3.0


class SearchSorted(nn.Module):
    """Uses an operator the ONNX exporter cannot express."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("edges", torch.linspace(-2, 2, 9))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.edges, x.contiguous()).float()


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as float32 0..16 images [N, 1, 8, 8], split 75/25."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.images.astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, x_test, y_train, y_test


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 30, scale: float = 1 / 16
) -> nn.Module:
    """A few seconds of Adam on CPU (the demo model's training loop)."""
    trained: nn.Module = demo_model.train(model, x, y, epochs, scale)
    return trained


def accuracy(predict: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(predict(x)).argmax(axis=1) == y).mean())


def save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path
