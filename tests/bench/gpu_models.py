"""The two architectures of the GPU benchmark, written with torch alone.

The GPU machine has torch but nothing else of ours, so the eager baseline cannot come from
torchvision or from a pickle of a class in ``tests/``. These definitions are small enough to
carry in the repository and load a plain ``state_dict`` (``weights_only=True``):

- :class:`ResNet18` is torchvision's ResNet-18, layer for layer, with the same ``state_dict``
  keys (``tests/gpu/test_gpu_bench.py`` checks both against torchvision);
- :class:`TextEncoder` is a small BERT-style encoder over token ids: embeddings, pre-norm
  self-attention and GELU feed-forward blocks, mean pooling and a classifier. Attention is
  written out (no ``nn.MultiheadAttention`` fast path), so the ONNX export is plain MatMul,
  Softmax and LayerNorm: the work a transformer does on a GPU.

Both take what the staged graph takes: ResNet-18 raw 0..255 pixels (the artifact bakes the
normalisation in, so :func:`normalise` does the same work in eager), the encoder INT64 ids.
"""

from __future__ import annotations

import math

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18, with ``width`` (64 there) to make a tiny one for CPU tests."""

    def __init__(self, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = [width, width * 2, width * 4, width * 8]
        inplanes = width
        for i, p in enumerate(planes, start=1):
            stride = 1 if i == 1 else 2
            layer = nn.Sequential(BasicBlock(inplanes, p, stride), BasicBlock(p, p, 1))
            setattr(self, f"layer{i}", layer)
            inplanes = p
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes)
        # torchvision's initialisation, so random weights give outputs of a realistic spread
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """What the staged ResNet graph does first: 0..255 → ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels * (1 / 255) - mean) / std


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, n, d/heads]
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.ff(self.norm2(x))


class TextEncoder(nn.Module):
    """A BERT-style encoder classifying INT64 token ids ``[batch, seq]``."""

    def __init__(
        self,
        vocab: int = 8192,
        seq: int = 128,
        dim: int = 256,
        layers: int = 4,
        heads: int = 4,
        classes: int = 16,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, dim)
        self.positions = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.layers = nn.Sequential(*(EncoderLayer(dim, heads, 4 * dim) for _ in range(layers)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions[:, : ids.shape[1]]
        return self.head(self.norm(self.layers(x)).mean(dim=1))
