"""The quantization engines behind the ``quantize`` step: one interface, one registry.

An engine turns an FP32 ONNX model into an INT8 one, either plainly (:meth:`QuantizeEngine.quantize`)
or under an accuracy criterion (:meth:`QuantizeEngine.tune`, recording every candidate in the
shared :class:`~compressor.steps.quantize.tuning.Tuner`). The step picks the engine here, once;
engines are imported lazily so NNCF and INC load only when a recipe asks for them.

Layering inside ``steps/quantize``: step -> engines -> tuning (accuracy_aware, tuning) -> ORT PTQ.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from compressor.errors import StepError
from compressor.recipe.steps.quantize import QuantizeConfig

if TYPE_CHECKING:
    from compressor.context import RunContext
    from compressor.steps.quantize.tuning import Tuner


class QuantizeEngine(ABC):
    """One way to make an INT8 QDQ (or QOperator) ONNX model.

    ``modes``: the ``quantize.mode`` values the engine implements."""

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]] = ("static",)

    def check(self, cfg: QuantizeConfig) -> None:
        """Refuse settings the engine cannot honour, before any work."""
        if cfg.mode not in self.modes:
            raise StepError(f"engine {self.name!r} quantizes in mode: {' or '.join(self.modes)} only, not {cfg.mode}",
                            hint="set quantize.mode: static, or engine: onnxruntime for dynamic INT8")

    @abstractmethod
    def quantize(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext) -> dict[str, Any]:
        """The engine's plain post-training quantization of ``model`` into ``dst``; returns what was done."""

    @abstractmethod
    def tune(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner) -> dict[str, Any]:
        """Quantize under ``tuner``'s criterion, recording every candidate in it; writes the
        passing model to ``dst`` (the step keeps the best one when none passes)."""


# the one registry: recipe name -> "module:Class"
ENGINES: dict[str, str] = {
    "onnxruntime": "compressor.steps.quantize.engines.onnxruntime:OnnxRuntimeEngine",
    "nncf": "compressor.steps.quantize.engines.nncf:NncfEngine",
    "inc": "compressor.steps.quantize.engines.inc:IncEngine",
}


def get_engine(name: str) -> QuantizeEngine:
    """The engine registered as ``name`` (the recipe schema allows only registered names)."""
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()
