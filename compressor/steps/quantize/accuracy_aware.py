"""Accuracy-aware INT8 on ONNX Runtime's quantizer: quantize, evaluate, and fall back the
most sensitive operators to FP32 until the accuracy drop against the FP32 model meets the
criterion.

Static (QDQ) and dynamic (QOperator) INT8: a few cheap calibration variants first, then a
per-layer sensitivity analysis (each quantized node quantized alone, measured on a small
evaluation subset, cached) orders the fallback. The shared :class:`~.tuning.Tuner` keeps the
history, so the report looks the same whichever engine ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, DataError, StepError
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import equalize_onnx, preprocess, quantize_onnx
from compressor.steps.quantize.tuning import (Evaluator, Trial, Tuner, dynamically_quantized_nodes, ort_latency_ms,
                                              ort_outputs, quantized_nodes, tuning_data)
from compressor.utils.io import atomic_path, atomic_write_json, cache_dir, sha256_file, sha256_json

if TYPE_CHECKING:
    from compressor.pipeline import RunContext

# variants the loop tries before falling back layers, cheapest first (one calibration each at
# most); a variant that changes nothing from the configured setting is skipped. reduce_range
# and U8U8 avoid the U8S8 int16 saturation of x86 CPUs without VNNI; bias correction and
# cross-layer equalization are the depthwise-network fixes (docs/quantization.md)
CALIBRATION_VARIANTS: list[dict[str, Any]] = [
    {"calibration": "percentile", "percentile": 99.99},
    {"per_channel": False},
    {"reduce_range": True},
    {"bias_correction": "fast"},
    {"equalization": True},
    {"equalization": True, "bias_correction": "fast"},
    # last: on a VNNI CPU U8U8 has no fast kernel (MobileNetV2 ran 1.00x ORT FP32 against 2.0x for
    # U8S8, benchmarks/results/mobilenet_techniques.md); it is the fix where U8S8 saturates
    {"activation_type": "uint8", "weight_type": "uint8"},
]
# the settings of those that change dynamic quantization (it has no calibration)
DYNAMIC_SETTINGS = {"per_channel", "reduce_range"}

# makes, scores and records one candidate: (config, FP32 nodes, label, newly FP32 nodes) -> trial
TrialFn = Callable[[QuantizeConfig, list[str], str, list[str]], Trial]


def tune_onnxruntime(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner) -> dict[str, Any]:
    """Calibration variants, then sensitivity-ordered FP32 fallback, on ORT's quantizer:
    QDQ for mode static; QOperator for mode dynamic, where only the variants in
    :data:`DYNAMIC_SETTINGS` apply and no calibration data is read."""
    crit = tuner.criterion
    work = ctx.artifacts_dir / f"{dst.stem}.tuning"
    work.mkdir(parents=True, exist_ok=True)
    pre = work / "preprocessed.onnx"
    pre_info = preprocess(model, pre)
    src = pre if pre_info["preprocess"] != "none" else model
    calib = _calibration(ctx, cfg)
    threads = ctx.recipe.benchmark.threads
    sources = _Sources(src, work, calib)

    def trial(c: QuantizeConfig, exclude: list[str], label: str, fallback: list[str]) -> Trial:
        path = work / f"trial{len(tuner.trials) + 1:03d}.onnx"
        try:
            model_in, qc, extra = sources.get(c)
            info = {**quantize_onnx(model_in, path, qc, calib, nodes_to_exclude=exclude,
                                    calibration_cache=_calibration_cache(work, c), skip_preprocess=True), **extra}
            value = tuner.evaluator.score(_safe_outputs(path, tuner.evaluator.data, threads))
            lat = ort_latency_ms(path, tuner.evaluator.data, threads, crit.latency_iterations)
        except DataError:
            raise  # bad data fails every candidate alike: stop with the history
        except Exception as e:  # noqa: BLE001 - a candidate that ORT cannot make is a recorded, failed trial
            return tuner.record_error(label, e, fallback=fallback, excluded=exclude)
        return tuner.record(label, value, path=path, latency_ms=lat, fallback=fallback, excluded=exclude, info=info)

    configs = [("default", cfg)]
    if crit.tune_calibration:
        variants = [v for v in CALIBRATION_VARIANTS if _applicable(cfg, v)]
        configs += [(",".join(f"{k}={v}" for k, v in var.items()), cfg.model_copy(update=var))
                    for var in variants if any(getattr(cfg, k) != v for k, v in var.items())]
    best_cfg, best_label = cfg, "default"
    for label, c in configs:
        if not tuner.budget_left():
            break
        t = trial(c, [], label, [])
        if t.passed:
            return _finish(dst, tuner, pre_info, label)
        if tuner.best is t:
            best_cfg, best_label = c, label

    # per-layer sensitivity on the best calibration setting, then cumulative fallback
    order = sensitivity(sources, best_cfg, ctx, tuner, work)
    excluded: list[str] = []
    group = 1
    while tuner.budget_left() and len(excluded) < len(order):
        new = [n["node"] for n in order[len(excluded):len(excluded) + group]]
        excluded += new
        t = trial(best_cfg, list(excluded), f"{best_label}+fp32 {len(excluded)}", new)
        if t.passed:
            _trim(order, len(excluded) - len(new), len(excluded), best_cfg, best_label, trial, tuner)
            break
        # after two single-node steps, double the group: long tails of harmless layers cost trials
        if len(tuner.trials) - len(configs) >= 2:
            group *= 2
    return _finish(dst, tuner, pre_info, best_label, order)


class _Sources:
    """The FP32 model each candidate is quantized from. Cross-layer equalization is a pure
    FP32 rewrite that depends on the calibration data only, so it runs once per tuning run
    and every equalized candidate (variants, sensitivity analysis, fallbacks) quantizes that
    one model with ``equalization: false``: before, it re-ran for each of them, which made the
    per-node analysis of MobileNetV2 minutes long."""

    def __init__(self, src: Path, work: Path, calib: Dataset | None):
        self.src, self.work, self.calib = src, work, calib
        self._equalized: tuple[Path, dict[str, Any]] | None = None

    def get(self, cfg: QuantizeConfig) -> tuple[Path, QuantizeConfig, dict[str, Any]]:
        """(model to quantize, config to quantize it with, details to add to the trial's)."""
        if not cfg.equalization:
            return self.src, cfg, {}
        if self._equalized is None:
            path = self.work / "equalized.onnx"
            self._equalized = path, equalize_onnx(self.src, path, cfg, self.calib)
        path, info = self._equalized
        return path, cfg.model_copy(update={"equalization": False}), info


def _applicable(cfg: QuantizeConfig, variant: dict[str, Any]) -> bool:
    """Dynamic quantization has only :data:`DYNAMIC_SETTINGS`; U8U8 replaces U8S8 only (the x86
    saturation case): signed activations are a target's requirement (TensorRT: S8/S8), not a
    setting to tune away."""
    if cfg.mode != "static" and not set(variant) <= DYNAMIC_SETTINGS:
        return False
    return not ("weight_type" in variant and cfg.activation_type != "uint8")


def _trim(order: list[dict[str, Any]], lo: int, hi: int, cfg: QuantizeConfig, label: str, trial: TrialFn,
          tuner: Tuner) -> None:
    """The group that made the criterion pass may hold more nodes than needed (groups double):
    binary-search the shortest prefix of the sensitivity order that still passes (``lo`` nodes
    failed, ``hi`` passed). Every FP32 node costs speed; the tuner keeps the passing trial with
    the fewest."""
    while hi - lo > 1 and tuner.budget_left():
        mid = (lo + hi) // 2
        cand = [n["node"] for n in order[:mid]]
        t = trial(cfg, cand, f"{label}+fp32 {mid} (trim)", cand[lo:])
        lo, hi = (lo, mid) if t.passed else (mid, hi)


def _finish(dst: Path, tuner: Tuner, pre_info: dict[str, Any], label: str,
            order: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import shutil

    best = tuner.best
    if best is not None and best.passed and best.path is not None:
        with atomic_path(dst) as tmp:
            shutil.copyfile(best.path, tmp)
    # the kept trial's fallback and quantization details (nodes_excluded, ...); the last
    # scored trial's details when none was kept
    scored = [t for t in tuner.trials if t.error is None]
    shown = best if best is not None else (scored[-1] if scored else None)
    out = {**(shown.info if shown else {}), **pre_info, "tuned_calibration": label}
    out["tuning"] = {"fallback_nodes": list(best.excluded) if best else [],
                     "sensitivity_top": (order or [])[:20]}
    return out


def _calibration(ctx: RunContext, cfg: QuantizeConfig) -> Dataset | None:
    """Calibration data for static quantization; dynamic quantization reads none."""
    return ctx.calibration_data() if cfg.mode == "static" else None


def _calibration_cache(work: Path, cfg: QuantizeConfig) -> Path | None:
    """One file of activation ranges per calibration setting (static only)."""
    if cfg.mode != "static":
        return None
    # ranges depend on the model calibrated: an equalized model has its own
    return work / (f"calib-{cfg.calibration}-{cfg.percentile}-ma{int(cfg.moving_average)}"
                   f"-b{cfg.calibration_batch_size}-eq{int(cfg.equalization)}.json")


def _safe_outputs(path: Path, data: Dataset, threads: int) -> list[np.ndarray]:
    try:
        return ort_outputs(path, data, threads)
    except CompressorError as e:
        raise StepError(f"evaluating a quantized candidate failed: {e.message}") from e


def sensitivity(sources: _Sources, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner,
                work: Path) -> list[dict[str, Any]]:
    """Each quantized node quantized alone (every other node FP32) on a small subset: the nodes
    that hurt most on their own come first. (Excluding each node alone misses a hostile tensor
    whose producer and consumer both quantize it: neither exclusion alone removes its Q/DQ.)
    Cached by model hash + config (mode included) + subset under ``cache_dir()``. An equalized
    setting is analysed on the once-equalized FP32 model (:class:`_Sources`)."""
    import onnxruntime

    crit = tuner.criterion
    threads = ctx.recipe.benchmark.threads
    cache = _calibration_cache(work, cfg)
    src, cfg, _ = sources.get(cfg)
    # ranking needs no bias correction, and it would cost one correction pass per node
    cfg = cfg.model_copy(update={"bias_correction": "none"})
    data = tuning_data(ctx, crit).subset(crit.sensitivity_samples, seed=ctx.seed)
    calib = _calibration(ctx, cfg)
    key = sha256_json({"tuning_data": crit.tuning_data, "model": sha256_file(src),
                       "cfg": cfg.model_dump(mode="json", exclude={"accuracy_criterion"}),
                       "metric": tuner.evaluator.metric, "samples": len(data),
                       "calib": len(calib) if calib is not None else 0, "seed": ctx.seed,
                       "ort": onnxruntime.__version__, "v": 2})
    cached = cache_dir() / "accuracy_aware" / f"{key[:32]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["order"]
    ev = Evaluator(data, tuner.evaluator.metric, ort_outputs(src, data, threads), crit)
    full = work / "sens-full.onnx"
    quantize_onnx(src, full, cfg, calib, calibration_cache=cache, skip_preprocess=True)
    nodes = dynamically_quantized_nodes(src, full) if cfg.mode == "dynamic" else quantized_nodes(full)
    rows: list[dict[str, Any]] = []
    partial = False
    with ctx.progress.task("per-layer sensitivity", total=len(nodes)) as update:
        for i, node in enumerate(nodes):
            if time.perf_counter() - tuner.t0 > crit.timeout_s:
                partial = True
                break
            path = work / "sens-one.onnx"
            try:
                quantize_onnx(src, path, cfg, calib, nodes_to_exclude=[n for n in nodes if n != node],
                              calibration_cache=cache, skip_preprocess=True)
                outs = _safe_outputs(path, data, threads)
                rows.append({"node": node, "metric": round(ev.score(outs), 6), "output_mse": ev.output_error(outs)})
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - a node ORT cannot quantize alone falls back first
                rows.append({"node": node, "metric": None, "output_mse": None,
                             "error": f"{type(e).__name__}: {str(e)[:160]}"})
            update(i + 1, len(nodes))
    sign = 1.0 if ev.higher_is_better else -1.0
    # worst first; a node that could not be quantized alone before all
    rows.sort(key=lambda r: (r["metric"] is not None, sign * (r["metric"] or 0.0), -(r["output_mse"] or 0.0)))
    if not partial:  # a cut-short analysis is not cached
        atomic_write_json(cached, {"order": rows})
    return rows
