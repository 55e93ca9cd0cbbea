"""The recipe schema: pydantic models, unknown keys forbidden.

The key names are a public contract (docs/architecture.md): add to them, never rename.
Each step in ``steps:`` is a one-key mapping (``- quantize: {...}``) resolved by a
discriminated union, so an error names the exact key path. Each step's settings live in
their own module (``recipe/steps/``; ``quantize:`` takes its technique keys from the
registry in compressor/techniques/); this module assembles the recipe from them and
re-exports their names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_validator

from compressor.metrics import MetricName
from compressor.recipe.base import Strict
from compressor.recipe.steps.distill import DistillConfig, DistillStep, HintConfig, ModuleSource
from compressor.recipe.steps.prune import PruneConfig, PruneStep
from compressor.recipe.steps.quantize import (AccuracyCriterion, NncfOptions, QuantizeConfig, QuantizerSettings,
                                              QuantizeStep)
from compressor.recipe.steps.training import EarlyStopping, FinetuneConfig, FinetuneStep, TrainingConfig
from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig, WeightQuantizeStep

__all__ = [  # the step settings, re-exported: `from compressor.recipe.schema import QuantizeConfig` keeps working
    "AccuracyCriterion", "DistillConfig", "DistillStep", "EarlyStopping", "FinetuneConfig", "FinetuneStep",
    "HintConfig", "ModuleSource", "NncfOptions", "PruneConfig", "PruneStep", "QuantizeConfig", "QuantizerSettings",
    "QuantizeStep", "Strict", "TrainingConfig", "WeightQuantizeConfig", "WeightQuantizeStep",
    "BenchmarkSpec", "DataSpec", "GateSpec", "InputSpec", "LimitsSpec", "LlmBenchSpec", "ModelSpec", "Recipe",
    "SplitSpec", "StepSpec", "TextEvalSpec", "STEP_TYPES", "LLM_STEPS", "recipe_json_schema",
]


# ----------------------------------------------------------------------------- model


class InputSpec(Strict):
    """One named model input (multi-input models such as transformers)."""

    name: str
    shape: list[int] = Field(description="example shape, batch first")
    dtype: Literal["float32", "int64", "int32"] = "float32"
    dynamic: dict[int, str] = Field(default_factory=dict, description="axis -> name, e.g. {0: batch, 1: sequence}")


class ModelSpec(Strict):
    factory: str | None = Field(None, description="file.py:callable or package.module:callable returning an nn.Module")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description=".safetensors, or a .pt/.pth state_dict loaded weights-only")
    onnx: str | None = Field(None, description="an ONNX model; skips the torch-domain steps")
    hf: str | None = Field(None, description="a Hugging Face decoder-LLM folder (config.json, *.safetensors, "
                           "tokenizer); read offline, no remote code")
    gguf: str | None = Field(None, description="a GGUF decoder-LLM file, dequantized to FP32 when loaded")
    input_shape: list[int] | None = Field(None, description="example input shape, batch first")
    inputs: list[InputSpec] | None = Field(None, description="named inputs, instead of input_shape")
    output_names: list[str] | None = None
    opset: int = Field(18, ge=13, le=23)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        llm = [k for k in ("hf", "gguf") if getattr(self, k) is not None]
        if llm:
            others = [k for k in ("factory", "onnx", "weights", "input_shape", "inputs") if getattr(self, k) is not None]
            if len(llm) > 1 or others:
                raise ValueError(f"a decoder LLM is given by exactly one of 'hf' or 'gguf', without "
                                 f"{', '.join(repr(k) for k in llm[1:] + others)}")
            return self
        if (self.factory is None) == (self.onnx is None):
            raise ValueError("give exactly one of 'factory' (with 'weights') or 'onnx' (or 'hf' / 'gguf' for a decoder LLM)")
        if self.onnx is not None and self.weights is not None:
            raise ValueError("'weights' goes with 'factory'; an ONNX model carries its own weights")
        if self.input_shape is not None and self.inputs is not None:
            raise ValueError("give 'input_shape' or 'inputs', not both")
        if self.factory is not None and self.input_shape is None and self.inputs is None:
            raise ValueError("a torch model needs 'input_shape' (or 'inputs') to export it")
        for d in self.input_shape or []:
            if d < 1:
                raise ValueError(f"input_shape dimensions must be >= 1, got {self.input_shape}")
        return self

    @property
    def domain(self) -> Literal["torch", "onnx", "llm"]:
        if self.hf is not None or self.gguf is not None:
            return "llm"
        return "torch" if self.factory is not None else "onnx"


# ----------------------------------------------------------------------------- data


class SplitSpec(Strict):
    split: str = "test"
    samples: int | None = Field(None, ge=1, description="limit to this many samples (None = all)")


Metric = MetricName  # the names in compressor.metrics.METRICS


class TextEvalSpec(Strict):
    """Decoder-LLM evaluation on a text (``data.source: {text: file}``)."""

    max_tokens: int = Field(2048, ge=16, description="perplexity over the first this many tokens of the text")
    window: int = Field(512, ge=8, description="sliding-window length (tokens, BOS included)")
    stride: int = Field(256, ge=1, description="window step; each token is scored once with up to "
                        "window - stride tokens of context")
    bos: Literal["auto", "always", "never"] = Field(
        "auto", description="start each window with the BOS token: auto = when the tokenizer's configuration "
        "adds one (add_bos_token; a GGUF file's tokenizer.ggml.add_bos_token)")
    chat_template: bool = Field(False, description="wrap each agreement prompt as one user turn of the tokenizer's "
                                "chat template (perplexity always runs on the plain text)")
    prompts: int = Field(8, ge=1, description="greedy next-token agreement: prompts taken from the text")
    prompt_tokens: int = Field(32, ge=1)
    continuation_tokens: int = Field(16, ge=1, description="FP32 greedy tokens compared per prompt")
    calibration_samples: int = Field(16, ge=1, description="text windows (from after the evaluated part) for "
                                     "data-aware weight quantization (GPTQ, AWQ, scale estimation)")
    calibration_tokens: int = Field(128, ge=8)

    @model_validator(mode="after")
    def _stride(self) -> TextEvalSpec:
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must not exceed window ({self.window})")
        return self


class DataSpec(Strict):
    source: Union[str, dict[str, Any]] = Field(
        description="built-in name (fashion-mnist, digits), {npz: file}, {imagefolder: dir with <split>/<class>/ "
        "image folders}, {factory: file.py:fn}, {text: file} (decoder LLMs)"
    )
    text: TextEvalSpec = TextEvalSpec()
    calibration: SplitSpec = SplitSpec(split="train", samples=512)
    evaluation: SplitSpec = SplitSpec(split="test", samples=None)
    train: SplitSpec = SplitSpec(split="train", samples=None)
    metric: Metric = "top1"
    metrics: list[Metric] = Field(default_factory=list,
                                  description="extra metrics reported beside 'metric' (gates use 'metric' only)")

    @field_validator("source")
    @classmethod
    def _source(cls, v: Any) -> Any:
        if isinstance(v, dict):
            keys = set(v)
            kinds = keys & {"npz", "factory", "imagefolder", "text"}
            if len(kinds) != 1:
                raise ValueError("a data source mapping needs exactly one of 'npz', 'factory', 'imagefolder', 'text'")
            allowed = kinds | {"kwargs"}
            if keys - allowed:
                raise ValueError(f"unknown key(s) {sorted(keys - allowed)} in data source")
        return v


# ----------------------------------------------------------------------------- steps


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


# Adding a step: a FooConfig + FooStep(Strict) with one field named ``foo`` in recipe/steps/foo.py,
# then add it to this union and to compressor/steps/registry.py (tests/steps/test_registry.py checks both).
STEP_TYPES: dict[str, type[Strict]] = {
    "quantize": QuantizeStep,
    "prune": PruneStep,
    "distill": DistillStep,
    "finetune": FinetuneStep,
    "weight_quantize": WeightQuantizeStep,
}
LLM_STEPS = ("weight_quantize",)  # the steps a decoder LLM (model: hf / gguf) takes

StepSpec = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STEP_TYPES.items())],  # type: ignore[valid-type]
    Discriminator(_step_kind, custom_error_type="step", custom_error_message=(
        "each step is a one-key mapping such as '- quantize: {...}'; known steps: " + ", ".join(STEP_TYPES)
    )),
]


# ----------------------------------------------------------------------------- bench/gates


class LlmBenchSpec(Strict):
    """Decoder-LLM timing (``model: hf / gguf``)."""

    prefill_tokens: int = Field(128, ge=1, description="prompt length of the prefill latency")
    prefill_runs: int = Field(5, ge=1)
    decode_tokens: int = Field(64, ge=1, description="greedy tokens per decode run (batch 1, KV cache)")
    decode_runs: int = Field(2, ge=1, description="timed decode runs (after one warm-up run)")


class BenchmarkSpec(Strict):
    warmup: int = Field(50, ge=0)
    iterations: int = Field(200, ge=1, description="minimum number of timed runs")
    min_duration_s: float = Field(1.0, ge=0.0, description="keep timing until this long has passed")
    batch_size: int = Field(1, ge=1)
    threads: int = Field(2, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    timeout_s: float = Field(900.0, gt=0, description="per-target compile+benchmark time limit")
    isolate: bool = Field(True, description="compile+benchmark each (variant, target) in a child process, so a "
                          "crashing or hanging runtime fails only its own result")
    paired: bool | None = Field(None, description="time each compressed model interleaved with the baseline on "
                                "the same target (result.paired; the min_speedup gate uses it). Default: when "
                                "gates.min_speedup is set")
    llm: LlmBenchSpec = LlmBenchSpec()

    def eval_batch_for(self, max_batch: int | None) -> int:
        """The accuracy batch on a target that runs at most ``max_batch`` samples at once."""
        return min(self.eval_batch_size, max_batch or self.eval_batch_size)


class GateSpec(Strict):
    max_accuracy_drop: float | None = Field(None, ge=0, description="percentage points (or % for lower-is-better metrics)")
    min_speedup: float | None = Field(None, gt=0)
    max_latency_increase: float | None = Field(None, ge=0, description="percent, against a baseline report")
    max_size_bytes: int | None = Field(None, ge=1)
    max_perplexity_increase_pct: float | None = Field(None, ge=0, description="decoder LLMs: percent over the "
                                                      "FP32 baseline's perplexity on the same target")
    min_decode_tokens_per_s: float | None = Field(None, gt=0, description="decoder LLMs: batch-1 greedy decode speed")


class LimitsSpec(Strict):
    """Resource limits checked before any work starts (see docs/reliability.md)."""

    max_model_bytes: int | None = Field(None, ge=1, description="refuse model files (weights / ONNX + external data) larger than this")
    max_eval_bytes: int | None = Field(None, ge=1, description="refuse evaluation sets larger than this (inputs, as float32)")
    check_memory: bool = Field(True, description="refuse runs whose estimated peak memory exceeds the available RAM")


class Recipe(Strict):
    """A compression recipe (see README, "Recipe reference")."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str | None = None
    seed: int = 0
    model: ModelSpec
    data: DataSpec
    steps: list[StepSpec] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=lambda: ["onnxruntime-cpu"], min_length=1)
    devices: dict[str, str] = Field(
        default_factory=dict, description="target name -> the device it deploys to, overriding the target file's "
        "device: cpu (this host), or a profile such as arm64-dotprod, x86-64-avx2 (see docs/targets.md). "
        "Quantization defaults follow (runtime, device)")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    gates: GateSpec = GateSpec()
    limits: LimitsSpec = LimitsSpec()

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets lists a target twice")
        unknown = sorted(set(self.devices) - set(self.targets))
        if unknown:
            raise ValueError(f"devices names target(s) not in targets: {', '.join(unknown)}")
        kinds = self.step_kinds()
        if self.model.domain == "llm":
            other = [k for k in kinds if k not in LLM_STEPS]
            if other:
                raise ValueError(f"step {other[0]!r} does not apply to a decoder LLM (model: hf / gguf); its steps: "
                                 + ", ".join(LLM_STEPS))
            if len(kinds) > 1:
                raise ValueError("a decoder LLM takes one weight_quantize step (write a recipe per variant)")
            if kinds and self.steps[0].weight_quantize.algorithm == "gguf" and self.model.gguf is None:  # type: ignore[union-attr]
                raise ValueError("weight_quantize algorithm gguf re-encodes a GGUF file's blocks: model must be "
                                 "{gguf: file}")
            if not (isinstance(self.data.source, dict) and "text" in self.data.source):
                raise ValueError("a decoder LLM is evaluated on text: data.source must be {text: file}")
        elif any(k in LLM_STEPS for k in kinds):
            raise ValueError("step 'weight_quantize' needs a decoder LLM (model: hf or gguf)")
        return self

    def step_kinds(self) -> list[str]:
        return [_step_kind(s) or "?" for s in self.steps]


def recipe_json_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()
