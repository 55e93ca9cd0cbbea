"""The pruning/distillation recipes in recipes/ load and hold the steps they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.recipe.loader import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name, kinds", [
    ("prune_distill", ["prune", "distill"]),
    ("prune_distill_int8", ["prune", "distill", "quantize"]),
    ("prune_finetune", ["prune", "finetune"]),
])
def test_recipe_loads(name, kinds):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.step_kinds() == kinds
    assert recipe.steps[0].prune.ratio == 0.5
    assert recipe.model.input_shape == [1, 1, 28, 28]
