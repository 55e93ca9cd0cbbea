"""Fixtures for accuracy-aware quantization: a tiny digits MLP with one deliberately
quantization-hostile tensor, and recipe writers."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.tiny_training import train_on_digits

HOSTILE_MODEL = '''
import torch.nn as nn


class Hostile(nn.Module):
    """64 -> 32 -> relu -> 17 (linear) -> 10. Channel 16 of the middle tensor carries a
    huge data-dependent outlier that the classifier ignores (zero weights): FP32 is
    unaffected, per-tensor U8 quantization of that tensor loses every other channel."""

    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc0 = nn.Linear(64, 32)
        self.act = nn.ReLU()
        self.mid = nn.Linear(32, 17)
        self.head = nn.Linear(17, 10)

    def forward(self, x):
        return self.head(self.mid(self.act(self.fc0(self.flat(x)))))


def build():
    return Hostile()
'''


def write_hostile_model(d: Path) -> Path:
    """Writes hostile.py and hostile.safetensors (trained ~10 s on digits) into ``d``."""
    import torch
    from safetensors.torch import save_file

    def zero_outlier_readout(model) -> None:
        with torch.no_grad():  # the classifier never reads the outlier channel
            model.head.weight[:, 16] = 0.0

    (d / "hostile.py").write_text(HOSTILE_MODEL)
    model = train_on_digits(d / "hostile.py", d / "hostile.safetensors", epochs=8, after_step=zero_outlier_readout)
    with torch.no_grad():  # the outlier: a large, input-dependent value in channel 16
        model.mid.weight[16] = 400.0
        model.mid.bias[16] = 2000.0
    save_file(model.eval().state_dict(), str(d / "hostile.safetensors"))
    return d


def write_recipe(d: Path, quantize: str, *, name: str = "acc", evaluation: int = 300, model: str = "hostile",
                 extra: str = "") -> Path:
    """A recipe over the digits set with the given ``quantize:`` flow mapping."""
    text = textwrap.dedent(f"""\
        name: {name}
        model:
          factory: {d}/{model}.py:build
          weights: {d}/{model}.safetensors
          input_shape: [1, 1, 8, 8]
        data:
          source: digits
          calibration: {{split: train, samples: 128}}
          evaluation: {{split: test, samples: {evaluation}}}
        steps:
          - quantize: {quantize}
        targets: [onnxruntime-cpu]
        benchmark: {{warmup: 2, iterations: 10, min_duration_s: 0.0}}
        """) + extra
    path = d / f"{name}.yaml"
    path.write_text(text)
    return path
