"""Fixtures for the target tests: a tiny CNN trained for a few seconds on sklearn's
digits, and recipes that run it on chosen targets."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from compressor.data import load_split

    d = tmp_path_factory.mktemp("tt_model")
    (d / "tiny.py").write_text(TT_MODEL)
    spec = importlib.util.spec_from_file_location("tt_model_for_tests", d / "tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.build()
    train = load_split("digits", "train")
    x, y = torch.from_numpy(train.inputs["input"]), torch.from_numpy(train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    save_file(model.eval().state_dict(), str(d / "tiny.safetensors"))
    return d
