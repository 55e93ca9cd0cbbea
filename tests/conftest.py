"""Shared fixtures: a tiny real model trained for a few seconds on sklearn's digits,
recipes written into tmp folders, and a click CliRunner."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.tiny_training import train_on_digits

# The suite's recipes take the table's INT8 format: measuring every candidate format (the
# product's default, quantize.choose: measure) would add seconds to each of the ~100 quantizing
# runs. tests/steps/quantize/test_measure.py measures for real, with its own cache folder.
os.environ.setdefault("COMPRESSOR_QUANT_CHOOSE", "table")

TINY_MODEL = '''
import torch.nn as nn


def build(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )
'''


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with tiny.py (factory) and tiny.safetensors (trained weights)."""
    d = tmp_path_factory.mktemp("tiny_model")
    (d / "tiny.py").write_text(TINY_MODEL)
    train_on_digits(d / "tiny.py", d / "tiny.safetensors", epochs=12)
    return d


TINY_RECIPE = """\
name: tiny
model:
  factory: {model_dir}/tiny.py:build
  weights: {model_dir}/tiny.safetensors
  input_shape: [1, 1, 8, 8]
data:
  source: digits
  calibration: {{split: train, samples: 128}}
  evaluation: {{split: test, samples: 300}}
steps:
  - quantize: {{mode: static, calibration: minmax}}
targets: [onnxruntime-cpu]
benchmark: {{warmup: 3, iterations: 20, min_duration_s: 0.05}}
gates: {{max_accuracy_drop: 5.0}}
"""


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_RECIPE.format(model_dir=tiny_model_dir))
    return p


@pytest.fixture
def write_recipe(tmp_path, tiny_model_dir):
    """Write a recipe: the tiny recipe with text replacements, or any YAML text."""

    def write(text: str | None = None, *, replace: dict[str, str] | None = None, name: str = "r.yaml") -> Path:
        body = text if text is not None else TINY_RECIPE.format(model_dir=tiny_model_dir)
        for old, new in (replace or {}).items():
            assert old in body, f"{old!r} not in recipe"
            body = body.replace(old, new)
        p = tmp_path / name
        p.write_text(textwrap.dedent(body))
        return p

    return write


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke the compressor CLI in-process: ``cli("validate", path)``."""
    from compressor.cli.main import _register, cli as group

    _register()

    def invoke(*args: str | Path):
        return runner.invoke(group, [str(a) for a in args], catch_exceptions=False)

    return invoke


def pytest_collection_modifyitems(items) -> None:
    """The emulated isa pass (tests/test_isa_pass.py, a minute or more of qemu) goes first, so on
    two pytest-xdist workers it overlaps the rest of the suite instead of ending it."""
    first = [i for i in items if i.nodeid.startswith("tests/test_isa_pass.py")]
    if first:
        rest = [i for i in items if not i.nodeid.startswith("tests/test_isa_pass.py")]
        items[:] = first + rest
