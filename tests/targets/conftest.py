"""Fixtures for the target tests: a tiny CNN trained for a few seconds on sklearn's
digits, and recipes that run it on chosen targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_training import train_on_digits

TT_MODEL = '''
import torch.nn as nn


def build(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )
'''


@pytest.fixture(scope="session")
def tt_model_dir(tmp_path_factory) -> Path:
    """tiny.py + tiny.safetensors: a real (small) digits classifier."""
    d = tmp_path_factory.mktemp("tt_model")
    (d / "tiny.py").write_text(TT_MODEL)
    train_on_digits(d / "tiny.py", d / "tiny.safetensors", epochs=4)
    return d
