"""The fallback loop's group doubling can overshoot; the trim keeps the fewest FP32 nodes."""

from __future__ import annotations

import numpy as np

from compressor.data.dataset import Dataset
from compressor.recipe.schema import AccuracyCriterion, QuantizeConfig
from compressor.steps.quantize.accuracy_aware import _trim
from compressor.steps.quantize.tuning import Evaluator, Tuner


def _tuner(max_trials: int = 50) -> Tuner:
    labels = np.arange(100) % 4
    reference = [np.eye(4, dtype=np.float32)[labels]]  # FP32 is right on every sample: top-1 1.0
    crit = AccuracyCriterion(max_drop=1.0, max_trials=max_trials)
    return Tuner(Evaluator(Dataset({"x": np.zeros((100, 1), np.float32)}, labels), "top1", reference, crit), crit)


def _trial_needing(k: int, tuner: Tuner, calls: list[int]):
    """A candidate meets the criterion when the k most sensitive nodes are FP32 (top-1 1.0),
    and loses 5 points otherwise."""
    def trial(cfg, exclude, label, fallback=()):
        calls.append(len(exclude))
        value = 1.0 if len(exclude) >= k else 0.95
        return tuner.record(label, value, excluded=exclude, fallback=list(fallback))
    return trial


def test_trim_finds_the_shortest_passing_prefix():
    order = [{"node": f"n{i}"} for i in range(16)]
    tuner, calls = _tuner(), []
    trial = _trial_needing(5, tuner, calls)
    trial(None, [n["node"] for n in order[:8]], "fp32 8")   # the doubling loop: 4 failed, 8 passed
    _trim(order, 4, 8, QuantizeConfig(), "default", trial, tuner)
    assert calls == [8, 6, 5]                      # binary search between 4 (fails) and 8 (passes)
    assert len(tuner.best.excluded) == 5 and tuner.best.passed


def test_passing_trial_with_fewer_fallbacks_wins_over_a_smaller_drop():
    tuner, calls = _tuner(), []
    trial = _trial_needing(3, tuner, calls)
    trial(None, ["a", "b", "c", "d"], "4")
    trial(None, ["a", "b", "c"], "3")
    trial(None, ["a"], "1")             # fails: a failing trial never beats a passing one
    assert tuner.best.label == "3"


def test_trim_stops_at_the_trial_budget():
    order = [{"node": f"n{i}"} for i in range(64)]
    tuner, calls = _tuner(max_trials=2), []
    trial = _trial_needing(33, tuner, calls)
    trial(None, [n["node"] for n in order], "64")
    _trim(order, 32, 64, QuantizeConfig(), "default", trial, tuner)
    assert calls == [64, 48] and len(tuner.best.excluded) == 48
