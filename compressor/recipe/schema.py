"""The recipe schema: static pydantic models, unknown keys forbidden.

The key names are a public contract (docs/architecture.md): add to them, never rename.
Each step in ``steps:`` is a one-key mapping (``- quantize: {...}``) resolved by a
discriminated union, so an error names the exact key path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from compressor.metrics import MetricName


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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


class AccuracyCriterion(Strict):
    """Accuracy-aware quantization: tune until the drop against FP32 is at most ``max_drop``."""

    max_drop: float = Field(1.0, ge=0, description="points (absolute) or percent of the FP32 value (relative)")
    metric: Metric | None = Field(None, description="default: data.metric")
    mode: Literal["absolute", "relative"] = "absolute"
    max_trials: int = Field(20, ge=1, description="quantize+evaluate trials before giving up")
    timeout_s: float = Field(900.0, gt=0, description="tuning time budget")
    tuning_samples: int | None = Field(None, ge=1, description="evaluation subset for tuning (None: all)")
    sensitivity_samples: int = Field(200, ge=1, description="evaluation subset for the per-layer analysis")
    tune_calibration: bool = Field(True, description="before any FP32 fallback, also try (cheapest first) percentile "
                                   "calibration, per-tensor, reduce_range, bias correction (fast), cross-layer "
                                   "equalization, equalization + bias correction, GPTQ weight rounding, equalization "
                                   "+ GPTQ + bias correction, U8U8 (mode dynamic: per-tensor and reduce_range only)")
    latency_iterations: int = Field(20, ge=1, description="batch-1 ORT runs timed per trial")
    min_int8_mac_share: float | None = Field(
        None, ge=0.0, le=1.0, description="the FP32 fallback never leaves less than this share of the "
        "model's Conv/MatMul/Gemm MACs in INT8 (e.g. 0.8): past it the criterion counts as not met, so a "
        "tuned model stays a fast one (None: no floor; engine onnxruntime)")
    on_failure: Literal["fail", "keep_best"] = "fail"
    tuning_data: Literal["evaluation", "train"] = Field(
        "evaluation", description="data the tuner scores trials on: the evaluation set, or data.train "
        "(a held-out split, so the reported evaluation numbers are not tuned on)")


class NncfOptions(Strict):
    """Settings of ``engine: nncf`` (``nncf.quantize`` on the ONNX model)."""

    preset: Literal["performance", "mixed"] = Field(
        "performance", description="performance: symmetric activations; mixed: asymmetric (U8 with zero "
        "point) activations, symmetric weights")
    bias_correction: Literal["fast", "full"] = Field(
        "fast", description="fast: NNCF's default fast bias correction; full: the slower BiasCorrection "
        "algorithm (layer by layer on the calibration data; about 2x the quantize time)")
    subset_size: int | None = Field(None, ge=1, description="calibration samples NNCF uses (default: all)")
    model_type: Literal["transformer"] | None = Field(
        None, description="transformer: NNCF's transformer scheme (keeps sensitive ops such as the softmax "
        "and layer-norm inputs in FP32; SmoothQuant where NNCF applies it)")


class QuantizeConfig(Strict):
    engine: Literal["onnxruntime", "nncf", "inc"] = "onnxruntime"
    nncf: NncfOptions = NncfOptions()
    choose: Literal["measure", "table"] | None = Field(
        None, description="how the INT8 format (activation/weight types, reduce_range) is chosen where the recipe and "
        "the target file leave it open: measure = quantize every format the target's runtime has kernels for, score "
        "each on the calibration data (the tuning data under an accuracy_criterion), time each against FP32 on the "
        "target, ship the fastest that meets the accuracy limit (targets that run on this host, engine onnxruntime, "
        "mode static; cached per CPU, runtime versions and model); table = the device's defaults, or its measured "
        "profile (`device: profiles/<name>.json`). Default: measure ($COMPRESSOR_QUANT_CHOOSE overrides the default)")
    accuracy_criterion: AccuracyCriterion | None = None
    mode: Literal["static", "dynamic"] = Field(
        "static", description="static: calibrated QDQ; dynamic: activation ranges computed at run time (ORT "
        "quantize_dynamic, QOperator; engine onnxruntime only, accuracy_criterion included)")
    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, le=100.0)
    per_channel: bool = True
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["int8", "uint8"] = "int8"
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    reduce_range: bool = False
    quantize_bias: bool = Field(True, description="INT32 bias Q/DQ (ORT); TensorRT wants float bias")
    op_types: list[str] | None = Field(None, description="quantize only these op types (default: all supported)")
    nodes_to_exclude: list[str] = Field(default_factory=list)
    equalization: bool = Field(
        False, description="cross-layer equalization before quantizing (Data-Free Quantization): rescale "
        "consecutive Conv pairs, depthwise included, so per-channel weight ranges match; pairs through ReLU6 use "
        "clipping-aware scaling from the calibration data (engine onnxruntime)")
    bias_correction: Literal["none", "fast", "full"] = Field(
        "none", description="subtract each quantized Conv/Gemm channel's mean output shift from its bias: fast = "
        "the weight error times the layer's mean FP32 input on the calibration data (Data-Free Quantization's bias "
        "correction); full = then the whole-model residual, layer by layer (slow: one pass per layer) (engine "
        "onnxruntime, static; engine nncf has nncf.bias_correction)")
    weight_rounding: Literal["nearest", "gptq"] = Field(
        "nearest", description="nearest: round each weight to its nearest integer; gptq: round each layer's weights "
        "column by column, spreading each rounding error onto the columns not yet rounded (GPTQ, with the layer's "
        "input Hessian from the calibration data); same scales, same INT8 kernels (engine onnxruntime, static)")
    calibration_batch_size: int = Field(
        32, ge=1, description="samples per calibration batch; entropy, percentile and moving_average use the largest "
        "size <= this that divides the sample count (equal batches; any count works), recorded as "
        "calibration_batch_size_used")
    moving_average: bool = Field(
        False, description="minmax calibration: average each batch's min/max (ORT CalibMovingAverage) instead of "
        "the global extremes; tighter ranges, use with calibration_batch_size: 1. Keep the classifier in FP32 "
        "(nodes_to_exclude): a tight logit range clips the top logits and ties the top-1")

    @model_validator(mode="after")
    def _ort_techniques(self) -> QuantizeConfig:
        # these rewrite the ONNX model around ORT's quantizer: never ignore them silently
        if self.engine != "onnxruntime" and (self.equalization or self.bias_correction != "none"
                                             or self.weight_rounding != "nearest"):
            hint = " (use nncf.bias_correction)" if self.engine == "nncf" and self.bias_correction != "none" else ""
            raise ValueError(f"equalization, bias_correction and weight_rounding apply to engine onnxruntime, "
                             f"not {self.engine}{hint}")
        if self.mode == "dynamic" and (self.bias_correction != "none" or self.weight_rounding != "nearest"):
            raise ValueError("bias_correction and weight_rounding need mode: static (calibration data)")
        crit = self.accuracy_criterion
        if crit is not None and crit.min_int8_mac_share is not None and self.engine != "onnxruntime":
            raise ValueError(f"accuracy_criterion.min_int8_mac_share applies to engine onnxruntime, not {self.engine}")
        return self


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
        "Q4_0/Q4_1/Q8_0 blocks as they are (model: gguf; lossless, both runtimes; bits, group_size, symmetric, "
        "mixed come from the file)")
    awq: bool = Field(False, description="NNCF activation-aware weight scaling (calibration text, INT4, algorithm "
                      "rtn or gptq); ONNX Runtime targets run NNCF on the ONNX model (MatMulNBits)")
    scale_estimation: bool = Field(False, description="NNCF scale estimation: per-group scales fitted to the "
                                   "layer's outputs on the calibration text (INT4, algorithm rtn or gptq); ONNX "
                                   "Runtime targets run NNCF on the ONNX model (MatMulNBits), or with algorithm "
                                   "gptq ORT's GPTQ with its own MSE scale search")
    ratio: float = Field(1.0, gt=0.0, le=1.0, description="INT4 only: the share of the decoder layers' weights "
                         "at INT4, the rest at INT8, chosen by NNCF's sensitivity_metric (mixed precision by "
                         "measured sensitivity, both runtimes; the mixed layers stay INT8 as well)")
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
        if nncf and self.algorithm not in ("rtn", "gptq"):
            raise ValueError(f"{', '.join(nncf)} are NNCF options for algorithm rtn or gptq, not {self.algorithm}")
        if self.ratio < 1.0 and self.mixed == "edges":
            raise ValueError("ratio < 1 chooses the INT8 layers by sensitivity: use mixed: head or none, not edges")
        if self.sensitivity_metric is not None and self.ratio == 1.0:
            raise ValueError("sensitivity_metric ranks layers for ratio < 1: set ratio (e.g. 0.8) or remove it")
        if self.hqq_zero_points != "blocksum" and self.algorithm != "hqq":  # a resolved recipe holds the default
            raise ValueError(f"hqq_zero_points applies to algorithm hqq, not {self.algorithm}")
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


class QuantizeStep(Strict):
    quantize: QuantizeConfig = QuantizeConfig()


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


class ModuleSource(Strict):
    """A second torch model (teacher or student) built from a factory."""

    factory: str = Field(description="file.py:callable or package.module:callable")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description=".safetensors or weights-only .pt/.pth")


class HintConfig(Strict):
    student_layer: str
    teacher_layer: str
    weight: float = Field(1.0, gt=0)


class DistillConfig(TrainingConfig):
    teacher: Union[Literal["auto", "before", "original"], ModuleSource] = Field(
        "auto", description="before: the model as it stood before this step; original: the recipe's model; "
        "auto: 'before' for a separate student, 'original' when the student is the current model")
    student: Union[Literal["current"], ModuleSource] = Field(
        "current", description="current: the model so far (e.g. pruned), or a smaller architecture")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft (KL) loss; 1-alpha goes to hard-label CE")
    hint: list[HintConfig] = Field(default_factory=list, description="feature losses between named layers")

    @field_validator("hint", mode="before")
    @classmethod
    def _one_hint(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v


class DistillStep(Strict):
    distill: DistillConfig = DistillConfig()


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


# Adding a step: a FooConfig + FooStep(Strict) with one field named ``foo``, then add
# it to this union and to compressor/steps/registry.py (tests/steps/test_registry.py checks both).
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
