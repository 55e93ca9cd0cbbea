"""Pruning history instead of reshaping: a structured prune is stored as Torch-Pruning's
pruning history (JSON) + safetensors weights and replayed on a fresh factory model; a
resumed run rebuilds the torch steps' model from it without running the steps."""

from __future__ import annotations

import json

import pytest
import torch

from compressor.errors import StepError
from compressor.recipe.schema import PruneConfig
from compressor.steps.pruning_history import replay
from compressor.steps.prune.step import PruneStep
from tests.prune_fixtures import load_model, make_ctx, one_torch_thread, recipe_dict, write_model  # noqa: F401


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("hist"), train_epochs=1)


def test_history_replays_on_the_factory_model(tmp_path, tiny):
    recipe = recipe_dict(*tiny, [])
    ctx = make_ctx(tmp_path, recipe)
    step = PruneStep(PruneConfig(ratio=0.5, iterative_steps=2, round_to=4), "00-prune")
    pruned = step.run(load_model(recipe), ctx)
    record = json.loads(json.dumps(step.structure))  # plain JSON, nothing pickled
    assert record["op"] == "prune" and len(record["history"]) > 1
    assert record["inputs"] == [{"shape": [1, 1, 8, 8], "dtype": "float32"}]

    fresh = load_model(recipe)
    assert fresh.fc.in_features == 24
    replay(fresh, record)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in pruned.state_dict().items()}
    assert fresh.fc.in_features == pruned.fc.in_features < 24
    fresh.load_state_dict(pruned.state_dict(), strict=True)
    x = torch.rand(5, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), pruned.eval()(x))
    # the step's finished marker carries the same history
    saved = json.loads((ctx.run_dir / "checkpoints" / "00-prune" / "pruning_history.json").read_text())
    assert {"op": "prune", **saved} == step.structure


def test_unstructured_pruning_leaves_no_history(tmp_path, tiny):
    recipe = recipe_dict(*tiny, [])
    step = PruneStep(PruneConfig(mode="unstructured", ratio=0.5), "00-prune")
    step.run(load_model(recipe), make_ctx(tmp_path, recipe))
    assert step.structure is None
    assert not (tmp_path / "run" / "checkpoints" / "00-prune" / "pruning_history.json").exists()


def test_a_history_that_does_not_fit_is_a_step_error(tmp_path, tiny):
    recipe = recipe_dict(*tiny, [])
    step = PruneStep(PruneConfig(ratio=0.5), "00-prune")
    step.run(load_model(recipe), make_ctx(tmp_path, recipe))
    other = {**step.structure, "history": [["no_such_layer", True, [0, 1]]]}
    with pytest.raises(StepError, match="pruning history does not fit this model"):
        replay(load_model(recipe), other)
    with pytest.raises(StepError, match="not a pruning history this version can replay"):
        replay(load_model(recipe), {**step.structure, "version": 99})


@pytest.mark.slow
def test_resume_rebuilds_the_pruned_model_for_executorch_without_running_steps(tmp_path, tiny, monkeypatch):
    """A prune+finetune run, resumed with the torch-consuming executorch-xnnpack target added:
    the torch steps' model comes back from the chain's pruning history and weights; neither
    pruning nor training runs again."""
    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe
    from tests.prune_fixtures import write_recipe

    steps = [{"prune": {"ratio": 0.5}},
             {"finetune": {"epochs": 1, "batch_size": 64, "threads": 1, "train_samples": 512}}]
    recipe = recipe_dict(*tiny, steps)
    first = run_recipe(load_recipe(write_recipe(tmp_path, recipe)), recipe_path=tmp_path / "recipe.yaml",
                       run_dir=tmp_path / "run")
    assert [s.get("cached") for s in first.steps if s["kind"] in ("prune", "finetune")] == [False, False]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a torch-domain step ran again on resume")

    monkeypatch.setattr(PruneStep, "run", must_not_run)
    monkeypatch.setattr("compressor.steps.training.train", must_not_run)
    recipe["targets"] = ["onnxruntime-cpu", "executorch-xnnpack"]
    path = write_recipe(tmp_path, recipe)
    report = run_recipe(load_recipe(path), recipe_path=path, run_dir=tmp_path / "run", resume=True)
    assert all(s["cached"] for s in report.steps if s["kind"] in ("prune", "finetune", "export")), report.steps
    rows = {(r.variant, r.target): r for r in report.results}
    et, ort = rows["compressed", "executorch-xnnpack"], rows["compressed", "onnxruntime-cpu"]
    assert et.status == "ok", et.error
    assert et.accuracy.value == pytest.approx(ort.accuracy.value, abs=0.011)  # the same pruned, fine-tuned model
    assert et.size_bytes < rows["baseline", "executorch-xnnpack"].size_bytes
