"""The distill and finetune steps and the shared training loop, on digits."""

from __future__ import annotations

import pytest
import torch

from compressor.errors import RecipeError, StepError
from compressor.recipe.schema import DistillConfig, FinetuneConfig, PruneConfig
from compressor.steps.distill.step import DistillStep
from compressor.steps.finetune import FinetuneStep
from compressor.steps.prune.step import PruneStep
from tests.prune_fixtures import load_model, make_ctx, one_torch_thread, recipe_dict, write_model  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("teacher"), train_epochs=4)


def _pruned(tmp_path, trained, ratio=0.6):
    recipe = recipe_dict(*trained, [])
    ctx = make_ctx(tmp_path, recipe)
    model = PruneStep(PruneConfig(ratio=ratio), "00-prune").run(load_model(recipe), ctx)
    return recipe, ctx, model


def test_distillation_lowers_the_loss(tmp_path, trained):
    recipe, ctx, student = _pruned(tmp_path, trained)
    cfg = DistillConfig(epochs=4, lr=3e-3, batch_size=64, temperature=4.0, alpha=0.7)
    step = DistillStep(cfg, "01-distill")
    out = step.run(student, ctx)
    d = step.report.details
    losses = [row["loss"] for row in d["history"]]
    assert d["teacher"] == "original"  # auto: the student is the current model
    assert losses[-1] < 0.7 * losses[0], losses
    assert d["best_val_accuracy"] > d["student_val_accuracy_before"]
    assert d["teacher_val_accuracy"] > 0.8
    assert out is student
    assert (ctx.run_dir / "checkpoints" / "01-distill" / "done.json").exists()


def test_teacher_student_output_mismatch(tmp_path, trained):
    src, weights = trained
    recipe = recipe_dict(src, weights, [])
    cfg = DistillConfig(student={"factory": f"{src}:build_small", "factory_kwargs": {"num_classes": 5}})
    with pytest.raises(StepError, match=r"teacher output \[2, 10\] and student output \[2, 5\]"):
        DistillStep(cfg, "01-distill").run(load_model(recipe), make_ctx(tmp_path, recipe))


def test_unknown_hint_layer_lists_close_names(tmp_path, trained):
    recipe, ctx, student = _pruned(tmp_path, trained)
    cfg = DistillConfig(hint={"student_layer": "mixx", "teacher_layer": "mix"})
    with pytest.raises(RecipeError, match=r"student_layer: the model has no layer 'mixx' \(close names: mix"):
        DistillStep(cfg, "01-distill").run(student, ctx)


def test_hint_with_adapter_and_separate_student(tmp_path, trained):
    src, weights = trained
    recipe = recipe_dict(src, weights, [], train_samples=256)
    ctx = make_ctx(tmp_path, recipe)
    cfg = DistillConfig(epochs=1, batch_size=64, teacher="before", student={"factory": f"{src}:build_small"},
                        hint=[{"student_layer": "mix", "teacher_layer": "mix", "weight": 0.5}])
    step = DistillStep(cfg, "01-distill")
    student = step.run(load_model(recipe), ctx)
    assert student.fc.in_features == 8  # the small architecture came back
    assert step.report.details["teacher"] == "before"
    # the adapter (8 -> 24 channels, 1x1 conv) was trained and checkpointed with the student
    from safetensors.torch import load_file

    ckpt = next((ctx.run_dir / "checkpoints" / "01-distill").glob("epoch-*.safetensors"))
    assert load_file(str(ckpt))["adapter0.weight"].shape == (24, 8, 1, 1)


def test_finetune_early_stopping_and_resume_of_finished_step(tmp_path, trained):
    recipe, ctx, model = _pruned(tmp_path, trained, ratio=0.5)
    cfg = FinetuneConfig(epochs=6, lr=1e-6, batch_size=128, early_stopping={"patience": 1, "min_delta": 0.5})
    step = FinetuneStep(cfg, "02-finetune")
    step.run(model, ctx)
    d = step.report.details
    assert d["stopped_early"] and d["epochs_run"] == 2  # nothing improves by 50 points
    # --resume: the finished steps are not run again; a fresh factory model gets the pruned
    # architecture from the prune step's pruning history, then the fine-tuned weights
    ctx2 = make_ctx(tmp_path, recipe, resume=True)
    prune = PruneStep(PruneConfig(ratio=0.5), "00-prune")
    pruned = prune.run(load_model(recipe), ctx2)
    assert prune.report.cached and prune.structure["op"] == "prune" and prune.structure["history"]
    assert pruned.fc.in_features == model.fc.in_features
    again = FinetuneStep(cfg, "02-finetune")
    restored = again.run(pruned, ctx2)
    assert again.report.cached and again.report.details["epochs_run"] == 2
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(restored(x), model.eval()(x), atol=1e-5)
    # a finished step's weights never load into a model of another architecture
    with pytest.raises(StepError, match="does not fit the model"):
        FinetuneStep(cfg, "02-finetune").run(load_model(recipe), ctx2)
