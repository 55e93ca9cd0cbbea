"""Helpers for the target tests (recipes for the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path


def write_recipe(folder: Path, model_dir: Path, targets: list[str], *, quantize: bool = True,
                 benchmark: dict | None = None, name: str = "tt") -> Path:
    """A recipe for the tiny model on ``targets`` (small benchmark counts)."""
    import yaml

    bench = {"warmup": 2, "iterations": 10, "min_duration_s": 0.02, **(benchmark or {})}
    recipe = {
        "name": name,
        "model": {"factory": f"{model_dir}/tiny.py:build", "weights": f"{model_dir}/tiny.safetensors",
                  "input_shape": [1, 1, 8, 8]},
        "data": {"source": "digits", "calibration": {"split": "train", "samples": 64},
                 "evaluation": {"split": "test", "samples": 120}},
        "steps": [{"quantize": {"mode": "static"}}] if quantize else [],
        "targets": targets,
        "benchmark": bench,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())
