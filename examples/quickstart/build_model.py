"""Build the quick start's model: a small CNN trained in a few seconds on scikit-learn's bundled
8x8 handwritten digits (nothing is downloaded), saved as TorchScript.

    python examples/quickstart/build_model.py digits.pt

Needs torch and scikit-learn (`pip install torch scikit-learn`). Any TorchScript, ONNX or
pickled PyTorch file of your own works the same way; change the inputs in digits.yaml to match.
"""

from __future__ import annotations

import sys
import warnings

import torch
from sklearn.datasets import load_digits
from torch import nn


def main(path: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )  # fmt: skip
    data = load_digits()
    # Pixels 0..16 scaled to 0..1, as digits.yaml's preprocessing scales PNG bytes (0..255).
    x = torch.from_numpy(data.images).float()[:, None] / 16
    y = torch.from_numpy(data.target).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for i in range(0, len(x), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            optimizer.step()
    model.eval()
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what loads anywhere
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(model).save(path)
    print(f"{path}: digits CNN, training accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "digits.pt")
