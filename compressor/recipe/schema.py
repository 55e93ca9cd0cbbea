"""The recipe schema: static pydantic models, unknown keys forbidden.

The key names are the public contract of DESIGN.md: add to them, never rename.
Each step in ``steps:`` is a one-key mapping (``- quantize: {...}``) resolved by a
discriminated union, so an error names the exact key path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator


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
    input_shape: list[int] | None = Field(None, description="example input shape, batch first")
    inputs: list[InputSpec] | None = Field(None, description="named inputs, instead of input_shape")
    output_names: list[str] | None = None
    opset: int = Field(18, ge=13, le=23)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.factory is None) == (self.onnx is None):
            raise ValueError("give exactly one of 'factory' (with 'weights') or 'onnx'")
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
    def domain(self) -> Literal["torch", "onnx"]:
        return "torch" if self.factory is not None else "onnx"


# ----------------------------------------------------------------------------- data


class SplitSpec(Strict):
    split: str = "test"
    samples: int | None = Field(None, ge=1, description="limit to this many samples (None = all)")


Metric = Literal["top1", "macro_f1", "mse", "cosine", "top1_agreement"]


class DataSpec(Strict):
    source: Union[str, dict[str, Any]] = Field(
        description="built-in name (fashion-mnist, digits), {npz: file}, {imagefolder: dir with <split>/<class>/ "
        "image folders}, {factory: file.py:fn}"
    )
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
            kinds = keys & {"npz", "factory", "imagefolder"}
            if len(kinds) != 1:
                raise ValueError("a data source mapping needs exactly one of 'npz', 'factory', 'imagefolder'")
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
    tune_calibration: bool = Field(True, description="also try percentile calibration, per-tensor, reduce_range "
                                   "(mode dynamic: per-tensor and reduce_range only)")
    latency_iterations: int = Field(20, ge=1, description="batch-1 ORT runs timed per trial")
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
    calibration_batch_size: int = Field(32, ge=1)
    moving_average: bool = Field(
        False, description="minmax calibration: average each batch's min/max (ORT CalibMovingAverage) instead of "
        "the global extremes; tighter ranges, use with calibration_batch_size: 1. Keep the classifier in FP32 "
        "(nodes_to_exclude): a tight logit range clips the top logits and ties the top-1")


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
# it to this union and to compressor/steps/registry.py.
STEP_TYPES: dict[str, type[Strict]] = {
    "quantize": QuantizeStep,
    "prune": PruneStep,
    "distill": DistillStep,
    "finetune": FinetuneStep,
}

StepSpec = Annotated[
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in STEP_TYPES.items())],  # type: ignore[valid-type]
    Discriminator(_step_kind, custom_error_type="step", custom_error_message=(
        "each step is a one-key mapping such as '- quantize: {...}'; known steps: " + ", ".join(STEP_TYPES)
    )),
]


# ----------------------------------------------------------------------------- bench/gates


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


class GateSpec(Strict):
    max_accuracy_drop: float | None = Field(None, ge=0, description="percentage points (or % for lower-is-better metrics)")
    min_speedup: float | None = Field(None, gt=0)
    max_latency_increase: float | None = Field(None, ge=0, description="percent, against a baseline report")
    max_size_bytes: int | None = Field(None, ge=1)


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
        return self

    def step_kinds(self) -> list[str]:
        return [_step_kind(s) or "?" for s in self.steps]


def recipe_json_schema() -> dict[str, Any]:
    return Recipe.model_json_schema()
