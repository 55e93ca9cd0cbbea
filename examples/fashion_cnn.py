"""A small ResNet for 1x28x28 Fashion-MNIST, the toolkit's quickstart model.

Design: a 3x3 stem conv, then three stages of one BasicBlock each (widths
32/64/128 at 28/14/7 pixels; stages 2 and 3 downsample with a stride-2 conv and
a 1x1 projection shortcut), global average pooling and one Linear layer. About
36M multiply-adds per image: big enough that convolution time, not per-operator
overhead, dominates batch-1 latency, so halving every channel count by pruning
makes it markedly faster. The graph is only Conv, BatchNorm, ReLU, Add,
GlobalAveragePool and Linear (no in-place ops, no input normalisation: the BN
after the stem absorbs the input scale), so it exports to ONNX cleanly and
Torch-Pruning's dependency graph can follow every channel.

>>> model = build()
>>> model(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    # bias-free conv: the BatchNorm that follows supplies the shift
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (a 1x1 conv-BN when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.relu = nn.ReLU()
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        return self.relu(out + self.shortcut(x))


class FashionCNN(nn.Module):
    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn(1, w1, 3, 1), nn.ReLU())
        self.layer1 = BasicBlock(w1, w1, stride=1)   # 28x28
        self.layer2 = BasicBlock(w1, w2, stride=2)   # 14x14
        self.layer3 = BasicBlock(w2, w3, stride=2)   # 7x7
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(num_classes: int = 10, widths: Sequence[int] = (32, 64, 128)) -> nn.Module:
    """A freshly initialised FashionCNN (weights come from ``examples/train.py``)."""
    return FashionCNN(num_classes, widths)
