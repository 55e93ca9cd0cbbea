"""``finetune``: train the current model with plain cross-entropy (the shared loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compressor.recipe.steps.training import FinetuneConfig
from compressor.steps.base import Step

if TYPE_CHECKING:
    import torch

    from compressor.context import RunContext


def cross_entropy_loss(label_smoothing: float = 0.0) -> Any:
    """``loss_fn`` for :func:`compressor.steps.training.train`: CE on the model's logits."""
    import torch

    ce = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss_fn(model: torch.nn.Module, xb: list[torch.Tensor], yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(*xb)
        return ce(logits, yb), logits

    return loss_fn


class FinetuneStep(Step):
    """Recover accuracy after pruning, without a teacher.

    >>> # recipe:  - finetune: {epochs: 2, lr: 0.001}
    """

    kind = "finetune"
    domain = "torch"
    config: FinetuneConfig

    def apply(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        from compressor.steps.training import evaluate, split_validation, train

        eval_data = split_validation(ctx, self.config)[1]
        before = evaluate(model, eval_data)
        result = train(model, ctx, self.config, self.name, cross_entropy_loss(self.config.label_smoothing),
                       label=self.name)
        self.report.details = {"val_accuracy_before": before, **result.summary()}
        return model
