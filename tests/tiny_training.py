"""Train a small model file on sklearn's digits for test fixtures: real (if small)
trained weights in a few seconds, so tests never rely on random weights for accuracy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def train_on_digits(model_file: Path, weights: Path, *, epochs: int,
                    after_step: Callable[[Any], None] | None = None) -> Any:
    """Build ``model_file``'s ``build()``, train it with Adam for ``epochs`` on digits,
    call ``after_step(model)`` after each optimiser step, save the state to ``weights``
    (safetensors) and return the model in eval mode."""
    import importlib.util

    import torch
    from safetensors.torch import save_file

    from compressor.data import load_split

    spec = importlib.util.spec_from_file_location(f"tests_model_{model_file.stem}", model_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.build()
    train = load_split("digits", "train")
    x, y = torch.from_numpy(train.inputs["input"]), torch.from_numpy(train.labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            if after_step is not None:
                after_step(model)
    model.eval()
    save_file(model.state_dict(), str(weights))
    return model
