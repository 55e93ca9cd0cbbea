"""The ``prune`` step's settings (compressor/steps/prune/ reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from compressor.recipe.base import Strict
from compressor.recipe.steps.training import TrainingConfig


class PruneConfig(Strict):
    mode: Literal["structured", "unstructured", "nm"] = Field(
        "structured", description="structured channels (smaller + faster) or zero-masking sparsity (neither on CPU)")
    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of channels (or weights) to remove")
    importance: Literal["l1", "l2", "taylor", "random"] = "l2"
    global_pruning: bool = Field(False, description="rank channels across layers instead of a uniform ratio per layer")
    round_to: int | None = Field(None, ge=1, description="keep channel counts multiples of this (SIMD widths 8/16)")
    ignored_layers: list[str] = Field(default_factory=list, description="module name globs or module type names")
    ignore_classifier: bool = Field(True, description="never prune the output layer's classes")
    iterative_steps: int = Field(1, ge=1, description="reach the ratio in this many pruning rounds")
    finetune_between: TrainingConfig | None = Field(None, description="training after each pruning round but the last")
    taylor_batches: int = Field(4, ge=1, description="batches of gradients for importance: taylor")
    taylor_batch_size: int = Field(64, ge=1)
    n: int = Field(2, ge=1, description="mode nm: keep n of every m weights")
    m: int = Field(4, ge=2)
    max_layer_ratio: float = Field(0.9, gt=0, le=1.0, description="global pruning never removes more of one layer")

    @model_validator(mode="after")
    def _nm(self) -> PruneConfig:
        if self.n >= self.m:
            raise ValueError(f"n:m sparsity needs n < m, got {self.n}:{self.m}")
        return self


class PruneStep(Strict):
    prune: PruneConfig = PruneConfig()
