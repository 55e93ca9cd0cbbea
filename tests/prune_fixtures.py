"""Tiny models and recipes for the prune/distill/finetune tests (digits 8x8 data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: on cores shared with other processes, 2 threads ran these
    tiny models about 15x slower (threads spin at barriers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_MODELS = '''
import torch
from torch import nn


class ResCat(nn.Module):
    """A residual add and a concatenation: both couple channels across layers."""

    def __init__(self, width=24, num_classes=10, fixed_view=False):
        super().__init__()
        w = width
        self.fixed_view = fixed_view
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.branch_a = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(w, w, 1), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(w), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.res(x))
        x = torch.cat([self.branch_a(x), self.branch_b(x)], 1)
        x = self.mix(x)
        if self.fixed_view:  # a hard-coded channel count: the dependency graph cannot follow it
            return self.fc(x.view(x.shape[0], 24, -1).mean(-1))
        return self.fc(torch.flatten(self.pool(x), 1))


def build(width=24, num_classes=10, fixed_view=False):
    return ResCat(width, num_classes, fixed_view)


def build_small(num_classes=10):
    return ResCat(8, num_classes)
'''


def write_model(tmp: Path, train_epochs: int = 0, **build_kwargs: Any) -> tuple[Path, Path]:
    """tiny.py and tiny.safetensors (briefly trained on digits when train_epochs > 0)."""
    import torch
    from safetensors.torch import save_file

    from compressor.data import load_split
    from compressor.models.factory import import_callable

    src = tmp / "tiny.py"
    src.write_text(TINY_MODELS)
    torch.manual_seed(0)
    model = import_callable(f"{src}:build")(**build_kwargs)
    if train_epochs:
        torch.set_num_threads(1)  # see one_torch_thread (module fixtures run before it)
        ds = load_split("digits", "train", None)
        x = torch.from_numpy(ds.inputs[ds.input_names[0]]).float().reshape(-1, 1, 8, 8)
        y = torch.from_numpy(ds.labels).long()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(train_epochs):
            for idx in torch.randperm(len(x)).split(64):
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    weights = tmp / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.eval().state_dict().items()}, str(weights))
    return src, weights


def recipe_dict(src: Path, weights: Path, steps: list[dict[str, Any]], *, factory_kwargs: dict | None = None,
                train_samples: int | None = None, source: str = "digits", shape=(1, 1, 8, 8)) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": {"factory": f"{src}:build", "weights": str(weights), "input_shape": list(shape),
                  "factory_kwargs": factory_kwargs or {}},
        "data": {"source": source, "calibration": {"split": "train", "samples": 64},
                 "evaluation": {"split": "test", "samples": 200},
                 "train": {"split": "train", "samples": train_samples}},
        "steps": steps,
        "targets": ["onnxruntime-cpu"],
        "benchmark": {"warmup": 2, "iterations": 10, "min_duration_s": 0.05},
    }


def write_recipe(tmp: Path, recipe: dict[str, Any]) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def make_ctx(tmp: Path, recipe: dict[str, Any], resume: bool = False):
    """A RunContext for calling a step directly."""
    from compressor.context import RunContext
    from compressor.recipe.schema import Recipe

    return RunContext(Recipe.model_validate(recipe), tmp / "run", None, resume=resume)


def load_model(recipe: dict[str, Any]):
    from compressor.models.loader import load_torch_model
    from compressor.recipe.schema import ModelSpec

    return load_torch_model(ModelSpec.model_validate(recipe["model"]))
