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
        "rtn", description="ONNX Runtime: round-to-nearest, k-quant, GPTQ (calibration text) or HQQ; "
        "gguf: keep the source GGUF's Q4_0/Q4_1/Q8_0 blocks as they are (model: gguf; lossless, both runtimes; "
        "bits, group_size, symmetric, mixed come from the file)")
    awq: bool = Field(False, description="OpenVINO/NNCF: activation-aware scaling (calibration text, INT4)")
    scale_estimation: bool = Field(False, description="OpenVINO/NNCF: scale estimation (calibration text, INT4)")
    mixed: Literal["none", "head", "edges"] = Field(
        "head", description="INT4 only: keep layers at INT8. head: the lm-head (and, on OpenVINO, the "
        "embedding: NNCF's default); edges: also the first and last decoder layers")
    quantize_embedding: bool = Field(False, description="ONNX Runtime: also quantize the embedding Gather "
                                     "(GatherBlockQuantized, 4 bits only)")
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

    @field_validator("group_size")
    @classmethod
    def _group(cls, v: int) -> int:
        if v != -1 and (v < 16 or v > 256 or v & (v - 1)):
            raise ValueError(f"group_size must be a power of 2 in 16..256, or -1, not {v}")
        return v


class WeightQuantizeStep(Strict):
    weight_quantize: WeightQuantizeConfig = WeightQuantizeConfig()
