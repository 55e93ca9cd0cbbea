"""ONNX Runtime's quantizer: static QDQ or dynamic QOperator INT8, and our accuracy-aware loop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.recipe.steps.quantize import QuantizeConfig
from compressor.steps.quantize.accuracy_aware import tune_onnxruntime
from compressor.steps.quantize.engines import QuantizeEngine
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx

if TYPE_CHECKING:
    from compressor.context import RunContext
    from compressor.steps.quantize.tuning import Tuner


class OnnxRuntimeEngine(QuantizeEngine):
    name = "onnxruntime"
    modes = ("static", "dynamic")

    def quantize(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext) -> dict[str, Any]:
        calib = ctx.calibration_data() if cfg.mode == "static" else None
        with ctx.progress.task(f"{dst.stem}: calibrating", total=None) as update:
            return quantize_onnx(model, dst, cfg, calib, progress=lambda i, n: update(i, n))

    def tune(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner) -> dict[str, Any]:
        return tune_onnxruntime(model, dst, cfg, ctx, tuner)
