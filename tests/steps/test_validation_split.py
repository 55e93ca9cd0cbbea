"""Epoch selection must never look at the evaluation (test) split."""

from __future__ import annotations

import numpy as np

from compressor.context import RunContext
from compressor.recipe import parse_recipe
from compressor.recipe.schema import TrainingConfig
from compressor.steps.training import split_validation

RECIPE = """\
name: split
model: {factory: m.py:build, input_shape: [1, 1, 8, 8]}
data: {source: digits}
"""


def test_validation_is_held_out_of_the_training_split(tmp_path):
    ctx = RunContext(parse_recipe(RECIPE), tmp_path, None)
    train, val = split_validation(ctx, TrainingConfig(eval_samples=100))
    full = ctx.train_data()
    assert len(val) == 100 and len(train) == len(full) - 100
    rows = lambda ds: {x.tobytes() + bytes([int(y)]) for x, y in zip(ds.inputs["input"], ds.labels)}  # noqa: E731
    assert rows(train) | rows(val) == rows(full)
    # every validation sample comes from the training split, none from the evaluation split
    test_rows = rows(ctx.evaluation_data())
    assert len(rows(val) & rows(full)) == len(rows(val))
    assert len(rows(val) & test_rows) <= 2  # digits has a couple of exact duplicates across splits
    again = split_validation(ctx, TrainingConfig(eval_samples=100))[1]
    assert np.array_equal(again.labels, val.labels)  # seeded


def test_default_holdout_is_ten_percent_capped():
    from compressor.data import load_split

    n = len(load_split("digits", "train"))
    ctx = RunContext(parse_recipe(RECIPE), __import__("pathlib").Path("."), None)
    assert len(split_validation(ctx, TrainingConfig())[1]) == min(2000, n // 10)
