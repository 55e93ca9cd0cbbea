"""``distill``: train a student on a teacher's temperature-softened logits.

loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))
     + (1 - alpha) * CE(student, labels)  + sum(hint weights * MSE(adapter(student feature), teacher feature))

>>> # recipe:  - distill: {epochs: 3, temperature: 4.0, alpha: 0.7}
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from compressor.errors import StepError
from compressor.recipe.steps.distill import DistillConfig, ModuleSource
from compressor.steps.base import Step
from compressor.steps.distill.hints import Hint

if TYPE_CHECKING:
    import torch

    from compressor.context import RunContext


def build_module(src: ModuleSource, ctx: RunContext) -> torch.nn.Module:
    """A teacher/student from ``{factory, factory_kwargs, weights}`` (weights loaded safely)."""
    from compressor.models.loader import load_torch_model
    from compressor.recipe.schema import ModelSpec

    spec = ModelSpec(factory=src.factory, factory_kwargs=src.factory_kwargs, weights=src.weights,
                     input_shape=ctx.recipe.model.input_shape, inputs=ctx.recipe.model.inputs)
    return load_torch_model(spec)


def distill_loss(teacher: torch.nn.Module, temperature: float, alpha: float, hints: list[Hint]) -> Any:
    """``loss_fn`` for the training loop."""
    import torch
    import torch.nn.functional as F

    def loss_fn(student: torch.nn.Module, xb: list[torch.Tensor], yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            t_logits = teacher(*xb)
        s_logits = student(*xb)
        soft = F.kl_div(F.log_softmax(s_logits / temperature, 1), F.log_softmax(t_logits / temperature, 1),
                        reduction="batchmean", log_target=True) * temperature ** 2
        loss = alpha * soft + (1 - alpha) * F.cross_entropy(s_logits, yb)
        for h in hints:
            loss = loss + h.loss()
        return loss, s_logits

    return loss_fn


class DistillStep(Step):
    kind = "distill"
    domain = "torch"
    config: DistillConfig

    _student: Any = None

    def trainee(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        """The student: the current model, or one built from its factory (once)."""
        if self.config.student == "current":
            return model
        # a separate student replaces the architecture: a rebuild starts again from its factory
        self.structure = {"op": "student", "student": self.config.student.model_dump(mode="json")}
        if self._student is None:
            self._student = build_module(self.config.student, ctx)
        return self._student

    def apply(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        import torch

        from compressor.steps.training import evaluate, split_validation, train

        cfg = self.config
        student = self.trainee(model, ctx)
        teacher, teacher_kind = self._teacher(model, ctx)
        teacher.eval().requires_grad_(False)
        example = self._check_outputs(teacher, student, ctx)
        hints = [Hint(h, i, student, teacher) for i, h in enumerate(cfg.hint)]
        try:
            with torch.no_grad():
                teacher.eval()(*example)
                student.eval()(*example)
            adapters = {f"adapter{i}": h.build_adapter() for i, h in enumerate(hints)}
            eval_data = split_validation(ctx, cfg)[1]
            teacher_acc, before = evaluate(teacher, eval_data), evaluate(student, eval_data)
            result = train(student, ctx, cfg, self.name, distill_loss(teacher, cfg.temperature, cfg.alpha, hints),
                           extra=adapters, label=self.name)
        finally:
            for h in hints:
                h.remove()
        self.report.details = {"teacher": teacher_kind, "student": "current" if cfg.student == "current" else cfg.student.factory,
                               "temperature": cfg.temperature, "alpha": cfg.alpha,
                               "teacher_val_accuracy": teacher_acc, "student_val_accuracy_before": before,
                               **result.summary()}
        return student

    def _teacher(self, model: torch.nn.Module, ctx: RunContext) -> tuple[torch.nn.Module, str]:
        from compressor.models.loader import load_torch_model

        cfg = self.config
        if isinstance(cfg.teacher, ModuleSource):
            return build_module(cfg.teacher, ctx), cfg.teacher.factory
        kind = cfg.teacher
        if kind == "auto":
            # distilling the current model from itself teaches nothing: use the recipe's model
            kind = "original" if cfg.student == "current" else "before"
        if kind == "original":
            return load_torch_model(ctx.recipe.model), "original"
        return copy.deepcopy(model), "before"

    @staticmethod
    def _check_outputs(teacher: torch.nn.Module, student: torch.nn.Module, ctx: RunContext) -> tuple[Any, ...]:
        import torch

        from compressor.steps.prune.step import example_input

        example = example_input(ctx, batch=2)
        with torch.no_grad():
            t, s = teacher.eval()(*example), student.eval()(*example)
        if not isinstance(t, torch.Tensor) or not isinstance(s, torch.Tensor) or t.shape != s.shape:
            shape = lambda o: list(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__  # noqa: E731
            raise StepError(
                f"distill: teacher output {shape(t)} and student output {shape(s)} differ; distillation needs "
                "logits of the same shape",
                hint="give the student the teacher's number of classes (e.g. factory_kwargs: {num_classes: ...})",
            )
        return example

