"""The ``weight_quantize`` step: weight-only INT4/INT8 of a decoder LLM's ONNX export, run
once per runtime family of its targets (``settings["engine"]``, see :data:`RUNTIME_ENGINES`):
ONNX Runtime ``MatMulNBits`` (onnxruntime.py) or OpenVINO NNCF ``compress_weights``
(openvino.py). Data-aware algorithms (GPTQ, AWQ, scale estimation) calibrate on windows of
the recipe's text (``ctx.decoder``, set by the pipeline when it exports the decoder).

>>> RUNTIME_ENGINES["openvino"]
'openvino'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig
from compressor.steps.base import Step

if TYPE_CHECKING:
    from compressor.context import RunContext

#: target runtime -> the weight-only engine whose output it runs
RUNTIME_ENGINES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def calibration_feeds(text: Any, cache_shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    """Decoder feeds (``input_ids`` and an empty KV cache) of the text's calibration windows."""
    import numpy as np

    from compressor.export.decoder import cache_names

    kv, hd, layers = cache_shape
    past, _ = cache_names(layers)
    return [{"input_ids": c.reshape(1, -1), **{n: np.zeros((1, kv, 0, hd), np.float32) for n in past}}
            for c in text.calibration]


class WeightQuantizeStep(Step):
    kind = "weight_quantize"
    domain = "onnx"
    config: WeightQuantizeConfig

    def apply(self, model: Path, ctx: RunContext) -> Path:
        cfg, engine, decoder = self.config, self.settings["engine"], ctx.decoder
        layers = decoder.cache_shape[2]
        dst = ctx.artifacts_dir / (f"{self.name}.onnx" if engine == "onnxruntime" else f"{self.name}.xml")
        if cfg.algorithm == "gguf":  # the source file's own blocks, nothing re-rounded
            from compressor.steps.weight_only.gguf import reencode_step

            with ctx.progress.task(f"re-encoding the GGUF blocks ({engine})"):
                details = reencode_step(engine, model, dst, self._gguf_source(ctx), cfg.accuracy_level)
            self.report.details.update(details)
            return dst
        needs_data = cfg.algorithm == "gptq" or cfg.awq or cfg.scale_estimation or (
            cfg.ratio < 1.0 and cfg.algorithm != "hqq" and cfg.sensitivity_metric != "weight_quantization_error")
        feeds = calibration_feeds(decoder.text, decoder.cache_shape) if needs_data else None
        with ctx.progress.task(f"weight-only INT{cfg.bits} ({engine})"):
            if engine == "onnxruntime":
                from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

                details = quantize_matmul_nbits(model, dst, cfg, layers, feeds)
            else:
                from compressor.steps.weight_only.openvino import compress_openvino

                details = compress_openvino(model, dst, cfg, layers, feeds)
        if feeds:
            details["calibration"] = {"windows": len(feeds), "tokens": int(sum(f["input_ids"].size for f in feeds))}
        self.report.details.update(details)
        return dst

    def output_precision(self) -> str:
        # a GGUF re-encoding keeps the source's block types (int4, int8 or mixed): its report says
        # which, also when restored on --resume
        return self.report.details.get("precision") or f"int{self.config.bits}"

    @staticmethod
    def _gguf_source(ctx: RunContext) -> Path:
        return Path(ctx.recipe.model.gguf or "")  # anchored when the run started

    def output_files(self, out: Path) -> list[Path]:
        return [out] + ([out.with_suffix(".bin")] if out.suffix == ".xml" else [])  # OpenVINO IR: .xml + .bin

    def cache_inputs(self, ctx: RunContext) -> dict[str, Any]:
        out: dict[str, Any] = {"calibration": [c.tolist() for c in ctx.decoder.text.calibration]}
        if self.config.algorithm == "gguf":
            from compressor.stepcache import file_digest

            out["source"] = file_digest(self._gguf_source(ctx))
        return out
