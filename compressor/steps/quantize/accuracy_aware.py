"""Accuracy-aware INT8: quantize, evaluate, and fall back the most sensitive operators
to FP32 until the accuracy drop against the FP32 model meets the criterion.

The ONNX Runtime engine is our own loop, for static (QDQ) and dynamic (QOperator) INT8: a
few cheap calibration variants first, then a per-layer sensitivity analysis (each quantized
node quantized alone, measured on a small evaluation subset, cached) orders the fallback.
NNCF and INC run their own accuracy control (see :mod:`compressor.steps.quantize.engines`;
static only); all engines share the :class:`Tuner` history, so the report looks the same
whichever engine ran.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.bench.metrics import compute_metric, metric_info
from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, DataError, StepError
from compressor.recipe.schema import AccuracyCriterion, QuantizeConfig
from compressor.utils.io import atomic_write_json, cache_dir, sha256_file, sha256_json

if TYPE_CHECKING:
    from compressor.pipeline import RunContext
    from compressor.steps.quantize.onnxruntime_ptq import QuantizeStep

# calibration variants the ONNX Runtime loop tries before falling back layers (cheap: one calibration each)
CALIBRATION_VARIANTS: list[dict[str, Any]] = [
    {"calibration": "percentile", "percentile": 99.99},
    {"per_channel": False},
    {"reduce_range": True},
]
# the settings of those that change dynamic quantization (it has no calibration)
DYNAMIC_SETTINGS = {"per_channel", "reduce_range"}


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    """Scores a candidate (its first output over ``data``) against the FP32 model."""

    def __init__(self, data: Dataset, metric: str, reference: list[np.ndarray], criterion: AccuracyCriterion):
        self.data, self.metric, self.reference, self.criterion = data, metric, reference, criterion
        info = metric_info(metric)
        labels = data.labels
        if metric == "mse" and labels is None:
            labels = next(iter(data.inputs.values()))
        self.labels = labels
        self.higher_is_better = info.higher_is_better
        # the FP32 value; raises DataError when the data cannot provide the metric, before any tuning
        self.baseline = self.score(reference)

    def score(self, outputs: list[np.ndarray]) -> float:
        return compute_metric(self.metric, outputs[0], self.labels, self.reference[0])

    def drop(self, value: float) -> float:
        """Absolute: points (fractions) or percent (mse); relative: percent of the FP32 value."""
        worse = (self.baseline - value) if self.higher_is_better else (value - self.baseline)
        if self.criterion.mode == "relative" or not self.higher_is_better:
            return worse / abs(self.baseline) * 100.0 if self.baseline else 0.0
        return worse * 100.0

    def passes(self, value: float) -> bool:
        return self.drop(value) <= self.criterion.max_drop + 1e-9

    def output_error(self, outputs: list[np.ndarray]) -> float:
        """Mean squared error to the FP32 output: a finer signal than the metric on small subsets."""
        return float(np.mean((outputs[0].astype(np.float64) - self.reference[0].astype(np.float64)) ** 2))


def ort_outputs(path: Path, data: Dataset, threads: int, batch_size: int = 64) -> list[np.ndarray]:
    from compressor.bench.runner import run_batches
    from compressor.targets.onnxruntime_cpu import OrtSession

    return run_batches(OrtSession(path, threads, {}), data, batch_size)


def ort_latency_ms(path: Path, data: Dataset, threads: int, iterations: int) -> float:
    """Quick batch-1 latency (median of ``iterations`` runs) for the per-trial cost column."""
    from compressor.bench.latency import measure_latency
    from compressor.targets.onnxruntime_cpu import OrtSession

    s = OrtSession(path, threads, {})
    first = data.first(1)
    feeds = {n: first.get(n, next(iter(first.values()))) for n in s.input_names}
    stats, _ = measure_latency(lambda: s.run(feeds), warmup=3, iterations=iterations, min_duration_s=0.0)
    return round(stats.p50, 4)


# ----------------------------------------------------------------------------- history


@dataclass
class Tuner:
    """Trial budget, history and the best candidate so far."""

    evaluator: Evaluator
    criterion: AccuracyCriterion
    t0: float = field(default_factory=time.perf_counter)
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    def budget_left(self) -> bool:
        return len(self.trials) < self.criterion.max_trials and time.perf_counter() - self.t0 < self.criterion.timeout_s

    def record(self, desc: dict[str, Any], value: float, path: Path | None, latency_ms: float | None) -> dict[str, Any]:
        drop = round(self.evaluator.drop(value), 4)  # rounded: ties between equal scores stay ties
        t = {"trial": len(self.trials) + 1, **desc, "metric": round(value, 6), "drop": drop,
             "passed": self.evaluator.passes(value), "latency_ms": latency_ms,
             "elapsed_s": round(time.perf_counter() - self.t0, 2)}
        if self.trials and latency_ms is not None and self.trials[0].get("latency_ms"):
            t["latency_vs_first"] = round(latency_ms / self.trials[0]["latency_ms"], 3)
        self.trials.append(t)
        if self._better(t):
            self.best = {**t, "path": path}
        return t

    def record_error(self, desc: dict[str, Any], error: BaseException) -> dict[str, Any]:
        """A candidate that could not be made or scored is a trial too: it spends budget and
        its reason goes in the history; it never becomes the best."""
        msg = error.message if isinstance(error, CompressorError) else f"{type(error).__name__}: {error}"
        t = {"trial": len(self.trials) + 1, **desc, "metric": None, "drop": None, "passed": False,
             "latency_ms": None, "error": (msg.splitlines() or [""])[0][:300],
             "elapsed_s": round(time.perf_counter() - self.t0, 2)}
        self.trials.append(t)
        return t

    def _better(self, t: dict[str, Any]) -> bool:
        """A passing trial beats a failing one; among passing trials the one with the fewest
        FP32 fallbacks (the fastest) wins, then the smaller drop; among failing ones, the smaller drop."""
        b = self.best
        if b is None or (t["passed"] and not b["passed"]):
            return True
        if t["passed"] != b["passed"]:
            return False
        if t["passed"] and t.get("excluded_total", 0) != b.get("excluded_total", 0):
            return t.get("excluded_total", 0) < b.get("excluded_total", 0)
        return t["drop"] < b["drop"] - 1e-12

    def summary_line(self) -> str:
        return "; ".join(f"#{t['trial']} {t.get('label', '')} "
                         + (f"error ({t['error']})" if t.get("error") else f"drop {t['drop']:.2f}")
                         for t in self.trials)

    def details(self) -> dict[str, Any]:
        c = self.criterion
        return {"metric": self.evaluator.metric, "max_drop": c.max_drop, "mode": c.mode, "tuning_data": c.tuning_data,
                "samples": len(self.evaluator.data), "fp32_metric": round(self.evaluator.baseline, 6),
                "trials": self.trials, "seconds": round(time.perf_counter() - self.t0, 2)}


def tuning_data(ctx: RunContext, crit: AccuracyCriterion) -> Dataset:
    """The data trials are scored on: the evaluation set, or ``data.train`` when
    ``tuning_data: train`` keeps the evaluation set out of the tuning."""
    return ctx.train_data() if crit.tuning_data == "train" else ctx.evaluation_data()


def _evaluation(ctx: RunContext, source: Path, crit: AccuracyCriterion, samples: int | None) -> Evaluator:
    metric = crit.metric or ctx.recipe.data.metric
    full = tuning_data(ctx, crit)
    data = full.subset(samples, seed=ctx.seed) if samples else full
    if len(data) == 0:
        raise DataError(f"accuracy-aware quantization needs {crit.tuning_data} data",
                        hint=f"set data.{crit.tuning_data}")
    reference = ort_outputs(source, data, ctx.recipe.benchmark.threads)
    return Evaluator(data, metric, reference, crit)


# ----------------------------------------------------------------------------- the step


def run_tuned(step: QuantizeStep, model: Path, ctx: RunContext, cfg: QuantizeConfig) -> Path:
    """Entry point from QuantizeStep.run for the non-default engines and accuracy criteria."""
    if cfg.mode != "static" and cfg.engine != "onnxruntime":
        raise StepError(f"engine {cfg.engine!r} quantizes in mode: static only, not {cfg.mode}",
                        hint="set quantize.mode: static, or engine: onnxruntime for dynamic INT8")
    t0 = time.perf_counter()
    dst = ctx.artifacts_dir / f"{step.name}.onnx"
    crit = cfg.accuracy_criterion
    details: dict[str, Any] = {"engine": cfg.engine}
    if crit is None:  # a plain PTQ by another engine
        from compressor.steps.quantize import engines

        details.update(engines.ENGINES[cfg.engine](model, dst, cfg, ctx, None))
    else:
        tuner = Tuner(_evaluation(ctx, model, crit, crit.tuning_samples), crit)
        try:
            if cfg.engine == "onnxruntime":
                details.update(tune_onnxruntime(model, dst, cfg, ctx, tuner))
            else:
                from compressor.steps.quantize import engines

                details.update(engines.ENGINES[cfg.engine](model, dst, cfg, ctx, tuner))
        except DataError:
            raise  # the data cannot score any candidate: not a trial
        except CompressorError as e:
            # the engine gave up (e.g. NNCF raised): that is a failed trial; fail with the history
            tuner.record_error({"label": f"{cfg.engine} (stopped)", "fallback": [], "excluded_total": 0}, e)
            _fail(step, ctx, tuner, details, f"accuracy criterion not met ({cfg.engine} stopped: {e.message})", dst)
        details["tuning"] = {**tuner.details(), **details.get("tuning", {})}
        passed = tuner.best is not None and tuner.best["passed"]
        if not passed:
            if crit.on_failure == "fail" or tuner.best is None:
                _fail(step, ctx, tuner, details, "accuracy criterion not met", dst)
            _keep_best(step, dst, tuner, details)
        details["tuning"]["passed"] = passed
    step.report.details.update(details)
    step.report.seconds = time.perf_counter() - t0
    return dst


def _fail(step: QuantizeStep, ctx: RunContext, tuner: Tuner, details: dict[str, Any], why: str, dst: Path) -> None:
    """Write the full history beside the run (the run stops before report.json) and raise;
    no quantized model is left under the step's output name."""
    c = tuner.criterion
    dst.unlink(missing_ok=True)
    history = ctx.run_dir / f"{step.name}.tuning.json"
    atomic_write_json(history, {**details, "tuning": {**tuner.details(), "passed": False}})
    step.report.details.update(details, tuning={**tuner.details(), "passed": False})
    raise StepError(
        f"{why}: {tuner.evaluator.metric} drop <= {c.max_drop} ({c.mode}) not reached in "
        f"{len(tuner.trials)} trial(s) [{tuner.summary_line()}]; full history in {history}",
        hint="raise max_drop, max_trials or timeout_s, or set on_failure: keep_best",
    )


def _keep_best(step: QuantizeStep, dst: Path, tuner: Tuner, details: dict[str, Any]) -> None:
    import shutil

    from compressor.utils.io import atomic_path

    best = tuner.best
    assert best is not None
    if best["path"] is not None and Path(best["path"]).resolve() != dst.resolve():
        with atomic_path(dst) as tmp:
            shutil.copyfile(best["path"], tmp)
    details["tuning"]["kept_trial"] = best["trial"]
    details["gates"] = [{"name": f"{step.name}.accuracy_criterion", "limit": tuner.criterion.max_drop,
                         "value": best["drop"], "passed": False,
                         "detail": f"kept trial #{best['trial']} (on_failure: keep_best)"}]


# ----------------------------------------------------------------------------- ONNX Runtime loop


def tune_onnxruntime(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner) -> dict[str, Any]:
    """Calibration variants, then sensitivity-ordered FP32 fallback, on ORT's quantizer:
    QDQ for mode static; QOperator for mode dynamic, where only the variants in
    :data:`DYNAMIC_SETTINGS` apply and no calibration data is read."""
    from compressor.steps.quantize.onnxruntime_ptq import preprocess, quantize_onnx

    crit = tuner.criterion
    work = ctx.artifacts_dir / f"{dst.stem}.tuning"
    work.mkdir(parents=True, exist_ok=True)
    pre = work / "preprocessed.onnx"
    pre_info = preprocess(model, pre)
    src = pre if pre_info["preprocess"] != "none" else model
    calib = _calibration(ctx, cfg)
    threads = ctx.recipe.benchmark.threads
    # trial number -> (the nodes it kept in FP32, quantize_onnx's details): the kept trial's go in the report
    done: dict[int, tuple[list[str], dict[str, Any]]] = {}

    def trial(c: QuantizeConfig, exclude: list[str], desc: dict[str, Any], data: Dataset | None = None) -> tuple[dict, Path]:
        path = work / f"trial{len(tuner.trials) + 1:03d}.onnx"
        try:
            info = quantize_onnx(src, path, c, calib, nodes_to_exclude=exclude,
                                 calibration_cache=_calibration_cache(work, c), skip_preprocess=True)
            value = tuner.evaluator.score(_safe_outputs(path, tuner.evaluator.data, threads))
            lat = ort_latency_ms(path, tuner.evaluator.data, threads, crit.latency_iterations)
        except DataError:
            raise  # bad data fails every candidate alike: stop with the history
        except Exception as e:  # noqa: BLE001 - a candidate that ORT cannot make is a recorded, failed trial
            return tuner.record_error({**desc, "excluded_total": len(exclude)}, e), path
        t = tuner.record({**desc, "excluded_total": len(exclude)}, value, path, lat)
        done[t["trial"]] = (list(exclude), info)
        return t, path

    configs = [("default", cfg)]
    if crit.tune_calibration:
        variants = [v for v in CALIBRATION_VARIANTS if cfg.mode == "static" or set(v) <= DYNAMIC_SETTINGS]
        configs += [(",".join(f"{k}={v}" for k, v in var.items()), cfg.model_copy(update=var))
                    for var in variants if any(getattr(cfg, k) != v for k, v in var.items())]
    best_cfg, best_label = cfg, "default"
    for label, c in configs:
        if not tuner.budget_left():
            break
        t, _ = trial(c, [], {"label": label, "fallback": []})
        if t["passed"]:
            return _finish(dst, tuner, done, pre_info, label)
        if tuner.best is not None and tuner.best["trial"] == t["trial"]:
            best_cfg, best_label = c, label

    # per-layer sensitivity on the best calibration setting, then cumulative fallback
    order = sensitivity(src, best_cfg, ctx, tuner, work)
    excluded: list[str] = []
    group = 1
    while tuner.budget_left() and len(excluded) < len(order):
        new = [n["node"] for n in order[len(excluded):len(excluded) + group]]
        excluded += new
        t, _ = trial(best_cfg, excluded, {"label": f"{best_label}+fp32 {len(excluded)}", "fallback": new})
        if t["passed"]:
            _trim(order, len(excluded) - len(new), len(excluded), best_cfg, best_label, trial, tuner)
            break
        # after two single-node steps, double the group: long tails of harmless layers cost trials
        if len(tuner.trials) - len(configs) >= 2:
            group *= 2
    return _finish(dst, tuner, done, pre_info, best_label, order)


def _trim(order: list[dict[str, Any]], lo: int, hi: int, cfg: QuantizeConfig, label: str, trial: Callable,
          tuner: Tuner) -> None:
    """The group that made the criterion pass may hold more nodes than needed (groups double):
    binary-search the shortest prefix of the sensitivity order that still passes (``lo`` nodes
    failed, ``hi`` passed). Every FP32 node costs speed; the tuner keeps the passing trial with
    the fewest."""
    while hi - lo > 1 and tuner.budget_left():
        mid = (lo + hi) // 2
        cand = [n["node"] for n in order[:mid]]
        t, _ = trial(cfg, cand, {"label": f"{label}+fp32 {mid} (trim)", "fallback": cand[lo:]})
        lo, hi = (lo, mid) if t["passed"] else (mid, hi)


def _finish(dst: Path, tuner: Tuner, done: dict[int, tuple[list[str], dict[str, Any]]], pre_info: dict[str, Any],
            label: str, order: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    import shutil

    from compressor.utils.io import atomic_path

    best = tuner.best
    if best is not None and best["passed"]:
        with atomic_path(dst) as tmp:
            shutil.copyfile(best["path"], tmp)
    # the kept trial's fallback and quantization details (nodes_excluded, ...); the last trial's
    # details when none was kept
    fell_back, info = done.get(best["trial"] if best else -1) or ([], done[max(done)][1] if done else {})
    out = {**info, **pre_info, "tuned_calibration": label}
    out["tuning"] = {"fallback_nodes": fell_back,
                     "sensitivity_top": (order or [])[:20]}
    return out


def _calibration(ctx: RunContext, cfg: QuantizeConfig) -> Dataset | None:
    """Calibration data for static quantization; dynamic quantization reads none."""
    return ctx.calibration_data() if cfg.mode == "static" else None


def _calibration_cache(work: Path, cfg: QuantizeConfig) -> Path | None:
    """One file of activation ranges per calibration setting (static only)."""
    if cfg.mode != "static":
        return None
    return work / f"calib-{cfg.calibration}-{cfg.percentile}-ma{int(cfg.moving_average)}-b{cfg.calibration_batch_size}.json"


def _safe_outputs(path: Path, data: Dataset, threads: int) -> list[np.ndarray]:
    try:
        return ort_outputs(path, data, threads)
    except CompressorError as e:
        raise StepError(f"evaluating a quantized candidate failed: {e.message}") from e


def quantized_nodes(path: Path) -> list[str]:
    """Names of the compute nodes that read a DequantizeLinear output (i.e. run on INT8 inputs)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and n.name
            and any(i in dq_out for i in n.input)]


def dynamically_quantized_nodes(src: Path, quantized: Path) -> list[str]:
    """Names of the nodes of ``src`` that ORT's dynamic quantizer rewrote in ``quantized``.

    Dynamic quantization leaves no DequantizeLinear to follow: a quantized MatMul becomes
    ``<name>_quant`` (MatMulInteger), a Gather is rewired in place to an INT8 table. So a
    node counts as quantized when ``quantized`` lacks it unchanged (name, op, inputs,
    outputs). ORT first rewrites a Gemm into ``<name>_MatMul`` + ``<name>_Add``: that Gemm
    is quantized only when its MatMul is gone too. The names returned are ``src``'s, the
    ones ``nodes_to_exclude`` takes."""
    import onnx

    def sig(n: onnx.NodeProto) -> tuple:
        return n.op_type, tuple(n.input), tuple(n.output)

    kept = {n.name: sig(n) for n in onnx.load(str(quantized), load_external_data=False).graph.node}
    out = []
    for n in onnx.load(str(src), load_external_data=False).graph.node:
        if not n.name or kept.get(n.name) == sig(n):
            continue
        if n.op_type == "Gemm" and kept.get(f"{n.name}_MatMul", ("",))[0] == "MatMul":
            continue  # rewritten to MatMul + Add, and the MatMul left in FP32
        out.append(n.name)
    return out


def sensitivity(src: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner, work: Path) -> list[dict[str, Any]]:
    """Each quantized node quantized alone (every other node FP32) on a small subset: the nodes
    that hurt most on their own come first. (Excluding each node alone misses a hostile tensor
    whose producer and consumer both quantize it: neither exclusion alone removes its Q/DQ.)
    Cached by model hash + config (mode included) + subset under ``cache_dir()``."""
    import onnxruntime

    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx

    crit = tuner.criterion
    threads = ctx.recipe.benchmark.threads
    data = tuning_data(ctx, crit).subset(crit.sensitivity_samples, seed=ctx.seed)
    calib = _calibration(ctx, cfg)
    key = sha256_json({"tuning_data": crit.tuning_data, "model": sha256_file(src), "cfg": cfg.model_dump(mode="json", exclude={"accuracy_criterion"}),
                       "metric": tuner.evaluator.metric, "samples": len(data), "calib": len(calib) if calib is not None else 0, "seed": ctx.seed,
                       "ort": onnxruntime.__version__, "v": 2})
    cached = cache_dir() / "accuracy_aware" / f"{key[:32]}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["order"]
    ev = Evaluator(data, tuner.evaluator.metric, ort_outputs(src, data, threads), crit)
    cache = _calibration_cache(work, cfg)
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


ENGINE_FN = Callable[[Path, Path, QuantizeConfig, "RunContext", "Tuner | None"], dict[str, Any]]
