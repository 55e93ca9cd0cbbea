"""The search benchmarks' recipe: the tests' digits CNN (trained for a few seconds), pruned,
fine-tuned and statically quantized, and a search space over prune ratio x calibration x
quantization settings."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TINY_MODEL, TINY_RECIPE
from tests.tiny_training import train_on_digits

SPACE = ["steps[0].prune.ratio=float:0.2:0.8", "steps[-1].quantize.calibration=minmax,percentile,entropy",
         "steps[-1].quantize.per_channel=true,false"]
OBJECTIVES = "accuracy,latency,size"


def write_search_recipe(folder: Path) -> Path:
    """recipe.yaml (prune -> finetune -> quantize on digits) and its trained model in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.py").write_text(TINY_MODEL)
    train_on_digits(folder / "tiny.py", folder / "tiny.safetensors", epochs=12)
    text = TINY_RECIPE.format(model_dir=folder).replace(
        "steps:\n  - quantize:", "steps:\n  - prune: {ratio: 0.5}\n  - finetune: {epochs: 2, lr: 0.005}\n  - quantize:")
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def space_args() -> list[str]:
    return [a for s in SPACE for a in ("--space", s)] + ["--objectives", OBJECTIVES]
