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
from compressor.recipe.steps.quantize import QuantizeConfig, tuner_trials
from compressor.steps.quantize.alone import AloneCutter
from compressor.steps.quantize.onnxruntime_ptq import (fp32_rewrites_off, fp32_tag, preprocess, quantize_onnx,
                                                       quantized_rewrites_off, rewrite_fp32)
from compressor.steps.quantize.tuning import (Evaluator, Trial, Tuner, dynamically_quantized_nodes, ort_latency_ms,
                                              ort_outputs, quantized_nodes, tuning_data)
from compressor.utils.io import atomic_path, atomic_write_json, cache_dir, sha256_file, sha256_json

if TYPE_CHECKING:
    from compressor.context import RunContext


def calibration_variants() -> list[dict[str, Any]]:
    """The variants the loop tries before falling back layers, cheapest first (one calibration each
    at most): the quantizer settings and every registered technique's trials
    (:func:`~compressor.recipe.steps.quantize.tuner_trials`); a variant that changes nothing from
    the configured setting is skipped. Bias correction, cross-layer equalization and GPTQ rounding
    are the depthwise-network fixes (docs/quantization.md)."""
    return [t.settings for t in tuner_trials()]


# a variant this much slower (batch-1 latency) than the configured setting is never the base
# of the per-layer steps and the FP32 fallback
SLOW_BASE = 1.25
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
    # per-tensor activation ranges, once adopted: (calibration cache, details) for every later trial
    chosen: dict[str, Any] = {}

    def trial(c: QuantizeConfig, exclude: list[str], label: str, fallback: list[str]) -> Trial:
        path = work / f"trial{len(tuner.trials) + 1:03d}.onnx"
        try:
            with tuner.running(f"trial {len(tuner.trials) + 1} [{label}]"):
                model_in, qc, extra = sources.get(c)
                info = {**quantize_onnx(model_in, path, qc, calib, nodes_to_exclude=exclude, skip_preprocess=True,
                                        calibration_cache=chosen.get("cache") or _calibration_cache(work, c),
                                        weight_overrides=chosen.get("weights")), **extra, **_chosen_info(chosen)}
                value, scores = tuner.evaluator.evaluate(_safe_outputs(path, tuner.evaluator.data, threads))
                lat = ort_latency_ms(path, tuner.evaluator.data, threads, crit.latency_iterations)
        except DataError:
            raise  # bad data fails every candidate alike: stop with the history
        except Exception as e:  # noqa: BLE001 - a candidate that ORT cannot make is a recorded, failed trial
            return tuner.record_error(label, e, fallback=fallback, excluded=exclude)
        return tuner.record(label, value, path=path, latency_ms=lat, fallback=fallback, excluded=exclude, info=info,
                            scores=scores)

    def done(t: Trial) -> bool:
        """A passing trial ends the search unless it is slower than FP32 (U8U8 without a fast
        kernel, say) while an earlier setting was not: then a faster passing candidate (e.g. a
        fallback on that setting) is still looked for, and kept if found."""
        if not (t.passed and tuner.slow(t) and tuner.faster_seen()):
            return t.passed
        tuner.note(f"trial {t.number} [{t.label}] passed but ran slower than FP32 "
                   f"({t.latency_ms} ms vs {tuner.fp32_latency_ms} ms): looked for a faster one")
        return False

    configs = [("default", cfg)]
    if crit.tune_calibration:
        variants = [v for v in calibration_variants() if _applicable(cfg, v)]
        configs += [(",".join(f"{k}={v}" for k, v in var.items()), cfg.model_copy(update=_variant(var)))
                    for var in variants if any(getattr(cfg, k) != v for k, v in var.items())]
    best_cfg, best_label, base_drop = cfg, "default", None
    for i, (label, c) in enumerate(configs):
        # whole-model variants get global_share of the budget: the FP32 fallback keeps the rest
        if not tuner.global_budget_left():
            if i < len(configs):
                tuner.note(f"{len(configs) - i} whole-model variant(s) skipped: their share of the "
                           f"budget (global_share {crit.global_share:g}) was spent; the per-layer steps got the rest")
            break
        t = trial(c, [], label, [])
        if done(t):
            return _finish(dst, tuner, pre_info, label)
        # the base of the per-layer steps: the smallest drop among the variants that are not
        # much slower than the configured setting (U8U8 on a VNNI CPU ran 2x slower: a fallback
        # built on it cannot be fast, however few layers fall back)
        if t.drop is not None and (t.latency_vs_first or 1.0) <= SLOW_BASE \
                and (base_drop is None or t.drop < base_drop - 1e-12):
            best_cfg, best_label, base_drop = c, label, t.drop

    # per-tensor activation ranges (min/max, percentile or entropy, whichever rounds and clips
    # each tensor least): a whole-model INT8 fix, tried before any FP32 fallback
    if crit.tune_calibration and best_cfg.mode == "static" and calib is not None and tuner.global_budget_left():
        try:
            chosen.update(_choose_ranges(sources, best_cfg, calib, work))
            t = trial(best_cfg, [], f"{best_label}+per-tensor ranges", [])
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - recorded like any failed candidate
            t = tuner.record_error(f"{best_label}+per-tensor ranges", e)
        if done(t):
            return _finish(dst, tuner, pre_info, f"{best_label}+per-tensor ranges")
        if t.drop is not None and (base_drop is None or t.drop < base_drop - 1e-12):
            best_label, base_drop = f"{best_label}+per-tensor ranges", t.drop
        else:  # they did not help on this model: the fallback goes on from the best setting
            chosen.clear()

    # per-layer sensitivity on the best calibration setting, then cumulative fallback
    tuner.phase = "per-layer"
    order = sensitivity(sources, best_cfg, ctx, tuner, work, chosen.get("cache"))
    # per-layer precision, ordered by sensitivity: per-channel weights for the most sensitive
    # layers of a per-tensor setting, in doubling groups, before any of them falls back
    if crit.tune_calibration and best_cfg.mode == "static" and not best_cfg.per_channel:
        t = _per_channel_layers(order, sources.get(best_cfg)[0], best_cfg, best_label, chosen, trial, tuner)
        if t is not None and done(t):
            return _finish(dst, tuner, pre_info, t.label, order)
        if chosen.get("weights"):
            best_label = f"{best_label}+per-channel {len(chosen['weights'])}"

    excluded: list[str] = []
    group, steps = 1, 0
    floor = _MacFloor(src, cfg, crit.min_int8_mac_share)
    while tuner.budget_left() and len(excluded) < len(order):
        new = floor.allowed(excluded, [n["node"] for n in order[len(excluded):len(excluded) + group]])
        if not new:
            tuner.note(floor.reason)
            break
        excluded += new
        t = trial(best_cfg, list(excluded), f"{best_label}+fp32 {len(excluded)}", new)
        if t.passed:
            _trim(order, len(excluded) - len(new), len(excluded), best_cfg, best_label, trial, tuner)
            break
        # after two single-node steps, double the group: long tails of harmless layers cost trials
        steps += 1
        if steps >= 2:
            group *= 2
    return _finish(dst, tuner, pre_info, best_label, order)


class _MacFloor:
    """``min_int8_mac_share``: how far the FP32 fallback may go. The share is counted on the
    fully quantized model of the configured setting minus the MACs of the nodes falling back
    (:func:`~.macs.node_macs` of the FP32 model), before any candidate is made."""

    def __init__(self, src: Path, cfg: QuantizeConfig, floor: float | None):
        self.floor, self.reason = floor, ""
        if floor is None:
            return
        from compressor.steps.quantize.macs import node_macs

        self.macs = node_macs(src)
        self.total = sum(self.macs.values()) or 1
        # what the configured setting leaves FP32 whatever the tuner does
        self.base = sum(self.macs.get(n, 0) for n in cfg.nodes_to_exclude)

    def share(self, excluded: list[str]) -> float:
        return 1.0 - (self.base + sum(self.macs.get(n, 0) for n in excluded)) / self.total

    def allowed(self, excluded: list[str], new: list[str]) -> list[str]:
        """The longest prefix of ``new`` whose fallback keeps the share at or above the floor."""
        if self.floor is None:
            return new
        k = len(new)
        while k and self.share(excluded + new[:k]) < self.floor - 1e-12:
            k -= 1
        if not k:
            nxt = new[0] if new else "?"
            self.reason = (f"FP32 fallback stopped at {len(excluded)} node(s): falling back {nxt} too would leave "
                           f"{self.share(excluded + new[:1]):.1%} of MACs in INT8, under min_int8_mac_share "
                           f"{self.floor:.0%}")
        return new[:k]


class _Sources:
    """The FP32 model each candidate is quantized from. An FP32 rewrite (technique phase
    ``fp32_rewrite``: cross-layer equalization) depends on the calibration data only, so it runs
    once per tuning run and setting, and every such candidate (variants, sensitivity analysis,
    fallbacks) quantizes that one model with the rewrite turned off: before, it re-ran for each
    of them, which made the per-node analysis of MobileNetV2 minutes long."""

    def __init__(self, src: Path, work: Path, calib: Dataset | None):
        self.src, self.work, self.calib = src, work, calib
        self._rewritten: dict[str, tuple[Path, dict[str, Any]]] = {}

    def get(self, cfg: QuantizeConfig) -> tuple[Path, QuantizeConfig, dict[str, Any]]:
        """(model to quantize, config to quantize it with, details to add to the trial's)."""
        off = fp32_rewrites_off(cfg)
        if not off:
            return self.src, cfg, {}
        key = sha256_json({k: getattr(cfg, k) for k in off})[:12]
        if key not in self._rewritten:
            path = self.work / f"{fp32_tag(cfg)}-{key}.onnx"
            self._rewritten[key] = path, rewrite_fp32(self.src, path, cfg, self.calib)
        path, info = self._rewritten[key]
        return path, cfg.model_copy(update=off), info


def _choose_ranges(sources: _Sources, cfg: QuantizeConfig, calib: Dataset, work: Path) -> dict[str, Any]:
    """Calibrate the model once per method of :data:`~.ranges.METHODS` (each an ORT calibration
    cache; the configured one is usually there already) and write the per-tensor choice of
    least quantization error (:func:`~.ranges.choose_ranges`). Returns the chosen cache and the
    details a trial made with it reports."""
    import onnx

    from compressor.steps.quantize.ranges import MSE_SAMPLES, METHODS, choose_ranges

    model_in, qc, _ = sources.get(cfg)
    qc = qc.model_copy(update=quantized_rewrites_off())
    caches: dict[str, Path] = {}
    for meth in METHODS:
        # the configured method as configured (moving average included); the others plain
        c = cfg if meth == cfg.calibration else cfg.model_copy(update={"calibration": meth, "moving_average": False})
        cache = _calibration_cache(work, c)
        if not cache.is_file():
            q = qc.model_copy(update={"calibration": c.calibration, "moving_average": c.moving_average})
            try:
                quantize_onnx(model_in, work / "ranges-calibration.onnx", q, calib, calibration_cache=cache,
                              skip_preprocess=True)
            except StepError:
                if meth == cfg.calibration:
                    raise
                continue  # a method ORT cannot calibrate this model with is not a candidate
        caches[meth] = cache
    names = [i.name for i in onnx.load(str(model_in), load_external_data=False).graph.input]
    subset = calib.subset(MSE_SAMPLES, seed=0) if len(calib) > MSE_SAMPLES else calib
    feeds = [{n: np.ascontiguousarray(f[n] if n in f else next(iter(f.values()))) for n in names}
             for f, _ in subset.batches(1)]
    dst = work / f"calib-chosen-{fp32_tag(cfg)}-{cfg.calibration}-ma{int(cfg.moving_average)}.json"
    choice = choose_ranges(model_in, caches, feeds, cfg.calibration, dst, cfg.activation_type,
                           cfg.symmetric_activations)
    picked = ", ".join(f"{m} {n}" for m, n in choice["picked"].items() if n)
    return {"cache": dst, "info": {"activation_ranges": {**choice, "changed": choice["changed"][:20]},
                                   "extra_techniques": [f"per-tensor activation ranges ({picked})"]}}


def _variant(var: dict[str, Any]) -> dict[str, Any]:
    """A variant's settings; a histogram calibration drops moving-average min/max (ORT's option
    for min/max only: before, the percentile variant of a moving-average recipe always errored)."""
    return {**var, "moving_average": False} if var.get("calibration", "minmax") != "minmax" else var


def _chosen_info(chosen: dict[str, Any]) -> dict[str, Any]:
    """What the per-tensor ranges and per-layer precision adopted so far add to a trial's details."""
    info = {**chosen.get("info", {}), **chosen.get("precision_info", {})}
    info["extra_techniques"] = [*chosen.get("info", {}).get("extra_techniques", []),
                                *chosen.get("precision_info", {}).get("extra_techniques", [])]
    return info if info["extra_techniques"] else {}


def weight_axes(model: Path) -> dict[str, tuple[str, int]]:
    """Node -> (weight initializer, per-channel axis as ORT's QDQ quantizer uses it) for the
    Conv, Gemm and MatMul nodes with a constant weight."""
    import onnx

    g = onnx.load(str(model), load_external_data=False).graph
    inits = {t.name: len(t.dims) for t in g.initializer}
    out = {}
    for n in g.node:
        if len(n.input) < 2 or n.input[1] not in inits or not n.name:
            continue
        if n.op_type == "Conv":
            out[n.name] = (n.input[1], 0)
        elif n.op_type == "Gemm":
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            out[n.name] = (n.input[1], 0 if trans_b else 1)
        elif n.op_type == "MatMul" and inits[n.input[1]] == 2:
            out[n.name] = (n.input[1], 1)
    return out


def _per_channel_layers(order: list[dict[str, Any]], model: Path, cfg: QuantizeConfig, label: str,
                        chosen: dict[str, Any], trial: TrialFn, tuner: Tuner) -> Trial | None:
    """Per-channel weights for the 1, 2, 4, ... most sensitive layers of a per-tensor setting
    (a layer whose channels' weight ranges differ widely loses the small ones per tensor), as
    long as each step improves on the best so far; the best step stays adopted in ``chosen``.
    Returns the last trial (None when no layer has a weight)."""
    axes = weight_axes(model)
    ranked = [r["node"] for r in order if r["node"] in axes]
    k, t, kept = 0, None, None
    while ranked and k < len(ranked) and tuner.budget_left():
        k = min(len(ranked), max(1, 2 * k))
        chosen["weights"] = {axes[n][0]: [{"axis": axes[n][1]}] for n in ranked[:k]}
        chosen["precision_info"] = {"per_channel_layers": ranked[:k],
                                    "extra_techniques": [f"per-channel weights on {k} sensitive layer(s)"]}
        t = trial(cfg, [], f"{label}+per-channel {k}", [])
        if t.passed:
            return t
        if tuner.best is not t:  # no gain from more layers: keep the last step that helped
            break
        kept = dict(chosen)
    for key in ("weights", "precision_info"):
        chosen.pop(key, None)
        if kept and key in kept:
            chosen[key] = kept[key]
    return t


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
    if order:
        out["tuning"]["sensitivity_ranked_by"] = "kl" if any("kl" in r for r in order) else "metric"
    return out


def _calibration(ctx: RunContext, cfg: QuantizeConfig) -> Dataset | None:
    """Calibration data for static quantization; dynamic quantization reads none."""
    return ctx.calibration_data() if cfg.mode == "static" else None


def _calibration_cache(work: Path, cfg: QuantizeConfig) -> Path | None:
    """One file of activation ranges per calibration setting (static only)."""
    if cfg.mode != "static":
        return None
    # ranges depend on the model calibrated: an FP32-rewritten (e.g. equalized) model has its own
    return work / (f"calib-{cfg.calibration}-{cfg.percentile}-ma{int(cfg.moving_average)}"
                   f"-b{cfg.calibration_batch_size}-{fp32_tag(cfg)}.json")


def _safe_outputs(path: Path, data: Dataset, threads: int) -> list[np.ndarray]:
    try:
        return ort_outputs(path, data, threads)
    except CompressorError as e:
        raise StepError(f"evaluating a quantized candidate failed: {e.message}") from e


def sensitivity(sources: _Sources, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner,
                work: Path, ranges: Path | None = None) -> list[dict[str, Any]]:
    """Each quantized node quantized alone (every other node FP32) on a small subset: the nodes
    that hurt most on their own come first. (Excluding each node alone misses a hostile tensor
    whose producer and consumer both quantize it: neither exclusion alone removes its Q/DQ.)
    Cached by model hash + config (mode included) + subset under ``cache_dir()``. An FP32-rewritten
    (e.g. equalized) setting is analysed on the once-rewritten FP32 model (:class:`_Sources`)."""
    import onnxruntime

    crit = tuner.criterion
    threads = ctx.recipe.benchmark.threads
    cache = ranges or _calibration_cache(work, cfg)
    src, cfg, _ = sources.get(cfg)
    # ranking needs no rewrite of the quantized model (bias correction, weight rounding), which would
    # cost a pass per node
    cfg = cfg.model_copy(update=quantized_rewrites_off())
    data = tuning_data(ctx, crit).subset(crit.sensitivity_samples, seed=ctx.seed)
    calib = _calibration(ctx, cfg)
    key = sha256_json({"tuning_data": crit.tuning_data, "model": sha256_file(src),
                       "cfg": cfg.model_dump(mode="json", exclude={"accuracy_criterion"}),
                       "metric": tuner.evaluator.metric, "samples": len(data),
                       "calib": len(calib) if calib is not None else 0, "seed": ctx.seed,
                       "ort": onnxruntime.__version__, "v": 6,  # 6: ranked by softmax KL to FP32 where it applies
                       "ranges": sha256_file(ranges) if ranges else None})
    cached = cache_dir() / "accuracy_aware" / f"{key[:32]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["order"]
    ev = Evaluator(data, tuner.evaluator.metric, ort_outputs(src, data, threads), crit)
    full = work / "sens-full.onnx"
    quantize_onnx(src, full, cfg, calib, calibration_cache=cache, skip_preprocess=True)
    nodes = dynamically_quantized_nodes(src, full) if cfg.mode == "dynamic" else quantized_nodes(full)
    rows: list[dict[str, Any]] = []
    # the analysis may use the budget up to halfway between the variants' share and the end:
    # the fallback trials keep the last part
    stop_at = tuner.budget_s * (1.0 + crit.global_share) / 2.0
    # static: each node's quantize-alone model is cut from the full QDQ model (milliseconds)
    # instead of re-running ORT's quantizer (seconds per node on MobileNetV2)
    cutter = _cutter(src, full) if cfg.mode == "static" else None
    with tuner.running("per-layer sensitivity", lambda: f"{len(rows)} of {len(nodes)} nodes", spinner=False), \
            ctx.progress.task("per-layer sensitivity", total=len(nodes)) as update:
        for i, node in enumerate(nodes):
            if time.perf_counter() - tuner.t0 > stop_at:
                break
            path = work / "sens-one.onnx"
            try:
                if not _cut(cutter, node, path):
                    quantize_onnx(src, path, cfg, calib, nodes_to_exclude=[n for n in nodes if n != node],
                                  calibration_cache=cache, skip_preprocess=True)
                outs = _safe_outputs(path, data, threads)
                value, scores = ev.evaluate(outs)
                rows.append({"node": node, "metric": round(value, 6), "output_mse": ev.output_error(outs),
                             **({"kl": scores["kl"]} if "kl" in scores else {})})
            except DataError:
                raise
            except Exception as e:  # noqa: BLE001 - a node ORT cannot quantize alone falls back first
                rows.append({"node": node, "metric": None, "output_mse": None,
                             "error": f"{type(e).__name__}: {str(e)[:160]}"})
            update(i + 1, len(nodes))
    rows = _rank(rows, ev.higher_is_better)
    if len(rows) == len(nodes):  # a cut-short analysis is not cached
        atomic_write_json(cached, {"order": rows})
    else:
        tuner.note(f"per-layer sensitivity cut short at {len(rows)} of {len(nodes)} nodes (time budget): the "
                   "others follow, unranked, in graph order")
        rows += [{"node": n, "metric": None, "output_mse": None, "unranked": True} for n in nodes[len(rows):]]
    tuner.say(f"tuning: per-layer sensitivity of {len(nodes)} nodes done ({tuner._elapsed():.0f} of "
              f"{tuner.budget_s:.0f} s); most sensitive: {', '.join(r['node'] for r in rows[:5])}")
    return rows


def _rank(rows: list[dict[str, Any]], higher_is_better: bool) -> list[dict[str, Any]]:
    """Worst first; a node that could not be quantized alone before all. Classification outputs
    rank by softmax KL to FP32 (every sample counts by how far it moved: on a small subset the
    top-1 metric is mostly ties, and low-margin samples flip it at random), then by the metric;
    others by the metric, then the output MSE."""
    sign = 1.0 if higher_is_better else -1.0
    if rows and all("kl" in r for r in rows if r["metric"] is not None):
        return sorted(rows, key=lambda r: (r["metric"] is not None, -(r.get("kl") or 0.0), sign * (r["metric"] or 0.0)))
    return sorted(rows, key=lambda r: (r["metric"] is not None, sign * (r["metric"] or 0.0), -(r["output_mse"] or 0.0)))


def _cutter(src: Path, full: Path) -> AloneCutter:
    import onnx

    return AloneCutter(onnx.load(str(src)), onnx.load(str(full)))


def _cut(cutter: AloneCutter | None, node: str, path: Path) -> bool:
    """Write ``node`` quantized alone to ``path`` by cutting; False when it cannot be cut (a node
    the two graphs do not share, a subgraph) and the quantizer must make it."""
    import onnx

    if cutter is None:
        return False
    try:
        model = cutter.model(node)
    except (KeyError, ValueError):
        return False
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return True
