"""The ``weight_quantize`` step: weight-only INT4/INT8 of a decoder LLM's ONNX export, run
once per runtime family of its targets (``settings["engine"]``, see :data:`RUNTIME_ENGINES`):
ONNX Runtime ``MatMulNBits`` (onnxruntime.py) or OpenVINO NNCF ``compress_weights``
(openvino.py). Data-aware algorithms (GPTQ, AWQ, scale estimation) calibrate on windows of
the recipe's text (``ctx.decoder``, set by the pipeline when it exports the decoder).

>>> RUNTIME_ENGINES["openvino"]
'openvino'
"""

from __future__ import annotations

import tempfile
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

            with tempfile.TemporaryDirectory(prefix="fused-", dir=ctx.artifacts_dir) as tmp:
                base, graph = model, {"kind": "generic"}
                if engine == "onnxruntime" and cfg.ort_graph != "generic":
                    base, graph = self._fused_graph(model, Path(tmp), ctx)
                with ctx.progress.task(f"re-encoding the GGUF blocks ({engine})"):
                    details = reencode_step(engine, base, dst, self._gguf_source(ctx), cfg.accuracy_level)
            self.report.details.update(details, graph=_graph_line(graph), graph_details=graph)
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

    def _fused_graph(self, generic: Path, tmp: Path, ctx: RunContext) -> tuple[Path, dict[str, Any]]:
        """ONNX Runtime's fused decoder graph (onnxruntime-genai's builder) of the run's model,
        checked against the generic FP32 graph; with ``ort_graph: auto`` the generic graph when
        the builder cannot build it or its logits differ (the reason goes into the report)."""
        from compressor.errors import ExportError, ParityError
        from compressor.export.genai_graph import build_fused_decoder, compare_decoders
        from compressor.models.llm import save_hf_folder

        llm = ctx.decoder.llm
        try:
            with ctx.progress.task("building ONNX Runtime's fused decoder graph (onnxruntime-genai model builder)"):
                folder = llm.path if llm.source == "hf" else save_hf_folder(llm, tmp / Path(llm.path).stem)
                fused = tmp / "fused-fp32.onnx"
                info = build_fused_decoder(folder, fused)
                parity = compare_decoders(generic, fused, llm.config, ctx.decoder.text.prompts[0])
            if not parity["passed"]:
                raise ParityError(f"the fused graph's logits differ from the generic graph's (max abs diff "
                                  f"{parity['max_abs_diff']:.3g}, top-1 agreement {parity['top1_agreement']:.3f})")
        except (ExportError, ParityError) as e:
            if self.config.ort_graph == "fused":
                raise
            ctx.progress.log(f"note: ONNX Runtime gets the generic decoder graph: {e}")
            return generic, {"kind": "generic", "fused_unavailable": str(e)}
        return fused, {"kind": "fused", **info, "parity_vs_generic_fp32": parity}

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


def _graph_line(graph: dict[str, Any]) -> str:
    """The decoder graph a re-encoding went into, in one line for report.md."""
    if graph["kind"] == "fused":
        parity = graph["parity_vs_generic_fp32"]
        return (f"fused ({graph['builder'].split(' (')[0]}; {graph['nodes']} nodes; FP32 logits vs the generic graph: "
                f"max abs diff {parity['max_abs_diff']:.2g})")
    reason = graph.get("fused_unavailable")
    return "generic" + (f" (fused unavailable: {reason})" if reason else "")
