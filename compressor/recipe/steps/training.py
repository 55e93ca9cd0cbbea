"""The training loop's settings, shared by ``finetune``, ``distill`` and pruning's fine-tunes
(compressor/steps/training.py reads them), and the ``finetune`` step."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compressor.recipe.base import Strict


class EarlyStopping(Strict):
    patience: int = Field(3, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="an improvement smaller than this (accuracy fraction) does not count")


class TrainingConfig(Strict):
    """The shared training loop of finetune/distill (and fine-tuning between pruning steps)."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    schedule: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(1, ge=1, description="epochs per decay for schedule: step")
    gamma: float = Field(0.1, gt=0, le=1, description="decay factor for schedule: step")
    seed: int | None = Field(None, description="default: the recipe seed")
    augmentation: Literal["none", "shift", "shift_flip"] = Field(
        "none", description="image augmentation: random +-2 px shifts (and horizontal flips)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    train_samples: int | None = Field(None, ge=1, description="train on a random subset of this size (speed)")
    eval_samples: int | None = Field(None, ge=1, description="validate each epoch on N samples held out of the training split (default 10%, at most 2000); never the evaluation split")
    early_stopping: EarlyStopping | None = Field(None, description="stop when validation accuracy stops improving")
    restore_best: bool = Field(True, description="end with the weights of the epoch with the best validation accuracy")
    bf16: bool = Field(False, description="bfloat16 autocast for the forward passes (about 2x faster on CPUs "
                       "with AMX/AVX512-BF16; evaluation stays float32)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while training (default: torch's); "
                                "1 is much faster than 2 on a machine whose cores are shared")


class FinetuneConfig(TrainingConfig):
    pass


class FinetuneStep(Strict):
    finetune: FinetuneConfig = FinetuneConfig()
