"""The ``weight_quantize`` step's settings (compressor/steps/weight_only/ reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from compressor.recipe.base import Strict


class WeightQuantizeConfig(Strict):
    """Weight-only quantization of a decoder LLM's linear layers (activations stay float).

    ONNX Runtime targets get ``MatMulNBits`` (onnxruntime.quantization's MatMulNBitsQuantizer);
    OpenVINO targets get NNCF ``compress_weights`` on the OpenVINO model. Same settings, one
    quantized model per runtime."""

    bits: Literal[4, 8] = 4
    group_size: int = Field(128, description="weights per scale along the input axis (16..256, power of 2); "
                            "-1: one scale per output channel")
    symmetric: bool = Field(True, description="symmetric (no zero point) or asymmetric weights")
    algorithm: Literal["rtn", "k_quant", "gptq", "hqq", "gguf"] = Field(
        "rtn", description="rtn: round-to-nearest (both runtimes); gptq: GPTQ on the calibration text (ONNX "
        "Runtime's own quantizer; on OpenVINO NNCF's gptq=True); hqq: half-quadratic quantization, data-free, "
        "optimised float zero points per group (onnxruntime's solver; ONNX Runtime: see hqq_zero_points; "
        "OpenVINO: u4 codes with float zero points, group_size must divide every layer's input width); "
        "k_quant: ONNX Runtime only; gguf: keep the source GGUF's "
        "Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q6_K blocks as they are (model: gguf; lossless, both runtimes; bits, group_size, symmetric, "
        "mixed come from the file)")
    awq: bool = Field(False, description="NNCF activation-aware weight scaling (calibration text, INT4, algorithm "
                      "rtn or gptq); ONNX Runtime targets run NNCF on the ONNX model (MatMulNBits)")
    scale_estimation: bool = Field(False, description="NNCF scale estimation: per-group scales fitted to the "
                                   "layer's outputs on the calibration text (INT4, algorithm rtn or gptq); ONNX "
                                   "Runtime targets run NNCF on the ONNX model (MatMulNBits), or with algorithm "
                                   "gptq ORT's GPTQ with its own MSE scale search")
    ratio: float = Field(1.0, gt=0.0, le=1.0, description="INT4 only: the share of the decoder layers' weights "
                         "at INT4, the rest at INT8, chosen by NNCF's sensitivity_metric (mixed precision by "
                         "measured sensitivity, both runtimes; the mixed layers stay INT8 as well); with "
                         "algorithm hqq: the layers with the largest HQQ reconstruction error stay INT8 (data-free)")
    sensitivity_metric: Literal["weight_quantization_error", "hessian_input_activation", "mean_activation_variance",
                                "max_activation_variance", "mean_activation_magnitude"] | None = Field(
        None, description="how ratio < 1 ranks layers (NNCF; default: hessian_input_activation with calibration "
        "text, weight_quantization_error without)")
    hqq_zero_points: Literal["blocksum", "integer", "float"] = Field(
        "blocksum", description="algorithm hqq, ONNX Runtime targets: how HQQ's float zero points reach MatMulNBits. "
        "blocksum: integer zero points plus the exact remainder as a per-block offset term (int kernels, HQQ's "
        "weights unchanged); integer: rounded zero points, the original weights rounded again onto HQQ's scales "
        "and them (int kernels, no extra ops, not HQQ's weights); float: as HQQ "
        "writes them (ONNX Runtime 1.31 runs float zero points on a slow unpacked path, ~0.2x FP32)")
    mixed: Literal["none", "head", "edges"] = Field(
        "head", description="INT4 only: keep layers at INT8. head: the lm-head (and, on OpenVINO, the "
        "embedding: NNCF's default); edges: also the first and last decoder layers")
    quantize_embedding: bool = Field(False, description="ONNX Runtime: also quantize the embedding Gather "
                                     "(GatherBlockQuantized, 4 bits only)")
    ort_graph: Literal["auto", "fused", "generic"] = Field(
        "auto", description="algorithm gguf, ONNX Runtime targets: the decoder graph the blocks are written "
        "into. fused: onnxruntime-genai's model builder (GroupQueryAttention with rotary inside, fused "
        "RMSNorms, packed q/k/v: ~350 nodes for SmolLM2-135M against ~2,400), ONNX Runtime only; generic: "
        "compressor's torch.export graph, the one OpenVINO runs; auto: fused where the builder supports the "
        "architecture and its FP32 logits match the generic graph's, else generic (the report says why)")
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4, description="ONNX Runtime MatMulNBits compute type: 4 = int8 activations (fastest on CPU), "
        "0 = default (float)")

    @model_validator(mode="after")
    def _gguf_grid(self) -> WeightQuantizeConfig:
        fixed = sorted(self.model_fields_set & {"bits", "group_size", "symmetric", "mixed", "awq",
                                                "scale_estimation", "quantize_embedding"})
        if self.algorithm == "gguf" and fixed:
            raise ValueError(f"algorithm gguf keeps the GGUF file's own grid: remove {', '.join(fixed)}")
        return self

    @model_validator(mode="after")
    def _combinations(self) -> WeightQuantizeConfig:
        # each of these would otherwise be ignored silently by one engine or the other
        nncf = [k for k, on in (("awq", self.awq), ("scale_estimation", self.scale_estimation),
                                ("ratio", self.ratio < 1.0)) if on]
        if nncf and self.bits != 4:
            raise ValueError(f"{', '.join(nncf)} apply to bits: 4 only (INT8 is round-to-nearest)")
        if self.algorithm == "hqq":  # ratio < 1 with hqq: the worst-fitting layers by HQQ's own error stay INT8
            nncf = [k for k in nncf if k != "ratio"]
            if self.sensitivity_metric is not None:
                raise ValueError("algorithm hqq ranks layers by HQQ's reconstruction error: remove sensitivity_metric")
        if nncf and self.algorithm not in ("rtn", "gptq"):
            raise ValueError(f"{', '.join(nncf)} are NNCF options for algorithm rtn or gptq, not {self.algorithm}")
        if self.ratio < 1.0 and self.mixed == "edges":
            raise ValueError("ratio < 1 chooses the INT8 layers by sensitivity: use mixed: head or none, not edges")
        if self.sensitivity_metric is not None and self.ratio == 1.0:
            raise ValueError("sensitivity_metric ranks layers for ratio < 1: set ratio (e.g. 0.8) or remove it")
        if self.hqq_zero_points != "blocksum" and self.algorithm != "hqq":  # a resolved recipe holds the default
            raise ValueError(f"hqq_zero_points applies to algorithm hqq, not {self.algorithm}")
        if self.ort_graph != "auto" and self.algorithm != "gguf":  # a resolved recipe holds the default
            raise ValueError(f"ort_graph applies to algorithm gguf, not {self.algorithm}")
        if self.algorithm == "hqq" and self.symmetric and "symmetric" in self.model_fields_set:
            raise ValueError("algorithm hqq is asymmetric (optimised zero points): remove symmetric: true")
        if self.algorithm in ("hqq", "gptq") and self.bits != 4:
            raise ValueError(f"algorithm {self.algorithm} quantizes to 4 bits only (use rtn for bits: 8)")
        if self.quantize_embedding and (self.awq or self.scale_estimation or self.ratio < 1.0
                                        or self.algorithm == "hqq"):
            raise ValueError("quantize_embedding (GatherBlockQuantized) combines with algorithm rtn, gptq or "
                             "k_quant without awq, scale_estimation or ratio")
        return self

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v != -1 and (v < 16 or v > 256 or v & (v - 1)):
            raise ValueError(f"group_size must be a power of 2 in 16..256, or -1, not {v}")
        return v


class WeightQuantizeStep(Strict):
    weight_quantize: WeightQuantizeConfig = WeightQuantizeConfig()
