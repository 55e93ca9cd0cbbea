"""The prune step on a tiny model with a residual add and a concatenation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressor.errors import RecipeError, StepError
from compressor.export.onnx_export import check_export_parity, export_onnx
from compressor.models.loader import input_specs
from compressor.recipe.loader import parse_recipe
from compressor.recipe.schema import PruneConfig
from compressor.steps.prune.step import PruneStep
from tests.prune_fixtures import load_model, make_ctx, one_torch_thread, recipe_dict, write_model  # noqa: F401


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("tiny"))


def _prune(tmp_path, tiny, **cfg):
    recipe = recipe_dict(*tiny, [{"prune": cfg}])
    model = load_model(recipe)
    step = PruneStep(PruneConfig(**cfg), "00-prune")
    return recipe, model, step.run(model, make_ctx(tmp_path, recipe)), step.report.details


def test_structured_prune_makes_onnx_smaller_and_matches_torch(tmp_path, tiny):
    recipe = recipe_dict(*tiny, [])
    original = load_model(recipe)
    specs = input_specs(make_ctx(tmp_path, recipe).recipe.model)
    before = export_onnx(original, tmp_path / "before.onnx", specs)
    _, _, pruned, details = _prune(tmp_path, tiny, ratio=0.5, importance="l1")
    after = export_onnx(pruned, tmp_path / "after.onnx", specs)
    assert after.stat().st_size < 0.5 * before.stat().st_size
    assert details["params_after"] < 0.4 * details["params_before"]
    assert details["macs_after"] < 0.4 * details["macs_before"]
    feeds = {"input": np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)}
    assert check_export_parity(pruned, after, feeds)["passed"]
    # the residual pair and both concatenated branches were pruned consistently
    ch = details["channels"]
    assert ch["stem.0"]["after"] == ch["res.0"]["after"] < ch["stem.0"]["before"]
    assert pruned.mix[0].in_channels == ch["branch_a.0"]["after"] + ch["branch_b.0"]["after"]
    # the classifier keeps its 10 classes (ignored by default)
    assert ch["fc"] == {"before": 10, "after": 10}
    assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_round_to_keeps_channel_counts_multiples(tmp_path, tiny):
    _, _, _, details = _prune(tmp_path, tiny, ratio=0.3, round_to=8)
    pruned_layers = {n: c for n, c in details["channels"].items() if n != "fc"}
    assert all(c["after"] % 8 == 0 for c in pruned_layers.values()), pruned_layers
    assert any(c["after"] < c["before"] for c in pruned_layers.values())


def test_global_taylor_iterative(tmp_path, tiny):
    _, _, pruned, details = _prune(tmp_path, tiny, ratio=0.5, importance="taylor", global_pruning=True,
                                   iterative_steps=2)
    assert [r["round"] for r in details["rounds"]] == [1, 2]
    assert details["rounds"][1]["params"] < details["rounds"][0]["params"] < details["params_before"]


def test_ignored_layers_by_glob_and_type(tmp_path, tiny):
    _, _, _, details = _prune(tmp_path, tiny, ratio=0.5, ignored_layers=["branch_*", "Linear"])
    ch = details["channels"]
    assert ch["branch_a.0"]["after"] == ch["branch_a.0"]["before"]
    assert ch["branch_b.0"]["after"] == ch["branch_b.0"]["before"]
    assert ch["stem.0"]["after"] < ch["stem.0"]["before"]


def test_ignore_pattern_matching_nothing_is_an_error(tmp_path, tiny):
    with pytest.raises(RecipeError, match=r"'branch_c\*' matches no layer.*branch_"):
        _prune(tmp_path, tiny, ratio=0.5, ignored_layers=["branch_c*"])


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.1])
def test_ratio_outside_open_interval_fails_validation(ratio):
    text = f"""
name: r
model: {{factory: tiny.py:build, input_shape: [1, 1, 8, 8]}}
data: {{source: digits}}
steps:
  - prune: {{ratio: {ratio}}}
"""
    with pytest.raises(RecipeError, match="ratio"):
        parse_recipe(text)


def test_untraceable_model_names_the_layer(tmp_path, tiny):
    recipe = recipe_dict(*tiny, [], factory_kwargs={"fixed_view": True})
    recipe["model"].pop("weights")
    model = load_model(recipe)
    step = PruneStep(PruneConfig(ratio=0.5), "00-prune")
    with pytest.raises(StepError, match=r"layer 'fc'.*ignored_layers"):
        step.run(model, make_ctx(tmp_path, recipe))


def test_unstructured_sparsity_reports_that_it_shrinks_nothing(tmp_path, tiny):
    _, _, pruned, details = _prune(tmp_path, tiny, mode="unstructured", ratio=0.6)
    assert 0.55 < details["sparsity"] < 0.65
    assert "no smaller" in details["note"] and "no faster" in details["note"]
    assert details["params_after"] == details["params_before"]
    assert float((pruned.fc.weight == 0).float().mean()) == 0.0  # classifier left dense


def test_two_four_sparsity_pattern(tmp_path, tiny):
    _, _, pruned, details = _prune(tmp_path, tiny, mode="nm", n=2, m=4)
    assert details["pattern"] == "2:4"
    assert "stem.0" in details["skipped_layers"]  # 1 input channel cannot hold 2:4 groups
    w = pruned.mix[0].weight.detach().movedim(1, -1).reshape(-1, 4)
    assert int((w != 0).sum(1).max()) <= 2


def test_iterative_pruning_with_finetuning_between_rounds(tmp_path, tiny):
    _, _, pruned, details = _prune(tmp_path, tiny, ratio=0.5, iterative_steps=2,
                                   finetune_between={"epochs": 1, "batch_size": 128, "eval_samples": 50})
    first, last = details["rounds"]
    assert first["finetune"]["epochs"] == 1 and "finetune" not in last
    assert last["params"] < first["params"]
