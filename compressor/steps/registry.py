"""The one list of steps: recipe key -> "module:Class", imported lazily."""

from __future__ import annotations

import importlib
from typing import Any

from compressor.steps.base import Step

STEPS: dict[str, str] = {
    "quantize": "compressor.steps.quantize.step:QuantizeStep",
    "prune": "compressor.steps.prune.step:PruneStep",
    "distill": "compressor.steps.distill.step:DistillStep",
    "finetune": "compressor.steps.finetune:FinetuneStep",
    "weight_quantize": "compressor.steps.weight_only.step:WeightQuantizeStep",
}


def make_step(kind: str, config: Any, name: str, **options: Any) -> Step:
    """A new step of ``kind``; ``options`` are :class:`Step`'s keyword arguments (settings, targets)."""
    module, _, cls = STEPS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)(config, name, **options)
