"""The ``quantize`` step's settings (compressor/steps/quantize/ reads them).

``QuantizeConfig`` is assembled from the technique registry (compressor/techniques/): the
quantizer's keys, then every registered technique's keys with their descriptions, then the
calibration batching (the order of the schema before techniques were modules). The
accuracy-aware tuner's candidates are :func:`tuner_trials`: the quantizer settings below and
each technique's trials, by rank.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, model_validator

from compressor import techniques
from compressor.metrics import MetricName as Metric
from compressor.recipe.base import Strict
from compressor.techniques import TunerTrial

# the tuner's candidates that are plain quantizer settings (the techniques add theirs between):
# reduce_range and U8U8 avoid the U8S8 int16 saturation of x86 CPUs without VNNI; U8U8 last, as
# on a VNNI CPU it has no fast kernel (MobileNetV2 ran 1.00x ORT FP32 against 2.0x for U8S8,
# benchmarks/results/mobilenet_techniques.md): it is the fix where U8S8 saturates
QUANTIZER_TRIALS = [
    TunerTrial(10, {"calibration": "percentile", "percentile": 99.99}, "percentile calibration"),
    TunerTrial(20, {"per_channel": False}, "per-tensor"),
    TunerTrial(30, {"reduce_range": True}, "reduce_range"),
    TunerTrial(90, {"activation_type": "uint8", "weight_type": "uint8"}, "U8U8"),
]


def tuner_trials() -> list[TunerTrial]:
    """The accuracy-aware tuner's candidates before any FP32 fallback, cheapest first."""
    return techniques.tuner_trials(QUANTIZER_TRIALS)


_TUNE_CALIBRATION = ("before any FP32 fallback, also try (cheapest first) "
                     + ", ".join(t.words for t in tuner_trials())
                     + " (mode dynamic: per-tensor and reduce_range only)")


class AccuracyCriterion(Strict):
    """Accuracy-aware quantization: tune until the drop against FP32 is at most ``max_drop``."""

    max_drop: float = Field(1.0, ge=0, description="points (absolute) or percent of the FP32 value (relative)")
    metric: Metric | None = Field(None, description="default: data.metric")
    mode: Literal["absolute", "relative"] = "absolute"
    time_budget_s: float = Field(
        600.0, gt=0, description="the tuning budget, in seconds: the whole-model variants stop at global_share of it "
        "and the per-layer steps (sensitivity, FP32 fallback) get the rest, so the fallback is always tried")
    max_trials: int | None = Field(None, ge=1, description="optional cap on quantize+evaluate trials (None: the time "
                                   "budget alone); the whole-model variants get at most global_share of it")
    timeout_s: float | None = Field(None, gt=0, description="older name of time_budget_s (kept working)")
    global_share: float = Field(
        0.5, gt=0.0, le=1.0, description="share of the time budget (and of max_trials) the whole-model variants may "
        "use before the per-layer steps start; the configured setting (trial 1) always runs")
    agreement_on: Literal["stable", "all", "noise_floor"] = Field(
        "stable", description="top1_agreement only: judge trials on the samples whose FP32 top-1 survives +-1 LSB of "
        "input noise (stable), or on all samples (all), or on all samples with the drop counted from FP32's own "
        "agreement under that noise (noise_floor: the mean of 3 seeds) instead of from 100%, so max_drop is how far "
        "below the input's own noise a candidate may fall; the noise floor is reported either way")
    tuning_samples: int | None = Field(None, ge=1, description="evaluation subset for tuning (None: all)")
    sensitivity_samples: int = Field(200, ge=1, description="evaluation subset for the per-layer analysis")
    tune_calibration: bool = Field(True, description=_TUNE_CALIBRATION)
    latency_iterations: int = Field(20, ge=1, description="batch-1 ORT runs timed per trial")
    min_int8_mac_share: float | None = Field(
        None, ge=0.0, le=1.0, description="the FP32 fallback never leaves less than this share of the "
        "model's Conv/MatMul/Gemm MACs in INT8 (e.g. 0.8): past it the criterion counts as not met, so a "
        "tuned model stays a fast one (None: no floor; engine onnxruntime)")
    on_failure: Literal["fail", "keep_best"] = "fail"
    tuning_data: Literal["evaluation", "train"] = Field(
        "evaluation", description="data the tuner scores trials on: the evaluation set, or data.train "
        "(a held-out split, so the reported evaluation numbers are not tuned on)")

    @model_validator(mode="after")
    def _budget_alias(self) -> AccuracyCriterion:
        if self.timeout_s is not None:
            if "time_budget_s" in self.model_fields_set and self.time_budget_s != self.timeout_s:
                raise ValueError("set time_budget_s or its older name timeout_s, not both")
            self.time_budget_s = self.timeout_s
        return self


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


class QuantizerSettings(Strict):
    """The quantizer's own keys of ``quantize:`` (before the techniques' in the schema), and the
    rules across keys. Recipes use :data:`QuantizeConfig`, which adds the techniques' keys."""

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
    @model_validator(mode="after")
    def _engine_rules(self) -> QuantizerSettings:
        # techniques rewrite the ONNX model around ORT's quantizer: never ignore one silently
        techniques.check(self)
        crit = self.accuracy_criterion
        if crit is not None and crit.min_int8_mac_share is not None and self.engine != "onnxruntime":
            raise ValueError(f"accuracy_criterion.min_int8_mac_share applies to engine onnxruntime, not {self.engine}")
        return self


class _CalibrationBatching(Strict):
    """The keys after the techniques' in the schema."""

    calibration_batch_size: int = Field(
        32, ge=1, description="samples per calibration batch; entropy, percentile and moving_average use the largest "
        "size <= this that divides the sample count (equal batches; any count works), recorded as "
        "calibration_batch_size_used")
    moving_average: bool = Field(
        False, description="minmax calibration: average each batch's min/max (ORT CalibMovingAverage) instead of "
        "the global extremes; tighter ranges, use with calibration_batch_size: 1. Keep the classifier in FP32 "
        "(nodes_to_exclude): a tight logit range clips the top logits and ties the top-1")


def quantize_config_model() -> type[QuantizerSettings]:
    """``QuantizeConfig`` as the technique registry stands: :class:`QuantizerSettings`' keys, every
    registered technique's, then the calibration batching. Made once on import (below); a test
    that registers a technique of its own calls it again.

    >>> "equalization" in quantize_config_model().model_fields
    True"""
    return create_model("QuantizeConfig", __module__=__name__,  # type: ignore[call-overload]
                        __base__=(_CalibrationBatching, techniques.settings_model(Strict), QuantizerSettings))


QuantizeConfig = quantize_config_model()


class QuantizeStep(Strict):
    quantize: QuantizeConfig = QuantizeConfig()  # type: ignore[valid-type]
