"""The measured INT8 format choice: quantize the model in every format the target's runtime
has kernels for, score each on the recipe's data, time each against FP32 on the target
(interleaved, a few seconds), and let :func:`~compressor.steps.quantize.formats.decide` pick.

The result is kept per (CPU model + flags, library versions, model hash, settings, data) in
:class:`~compressor.stepcache.HostMeasurements`, so a re-run pays nothing: it quantizes the
winner once, as a table choice would.

    >>> decision, path, info = choose_by_measurement(model, cfg, ctx, plan, work)   # doctest: +SKIP
    >>> decision.line                                                              # doctest: +SKIP
    'onnxruntime-cpu (x86-64 AVX512-VNNI+AMX): U8S8 chosen, 2.31x FP32, drop 0.00'
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.data.dataset import Dataset
from compressor.recipe.steps.quantize import AccuracyCriterion, QuantizeConfig
from compressor.stepcache import HostMeasurements
from compressor.steps.quantize.formats import FORMATS, RUNTIME_FORMATS, Candidate, Decision, decide
from compressor.steps.quantize.onnxruntime_ptq import preprocess, quantize_onnx
from compressor.steps.quantize.tuning import Evaluator, tuning_data
from compressor.utils.io import sha256_file

if TYPE_CHECKING:
    from compressor.context import RunContext

#: the accuracy limit (points) when the recipe sets neither an accuracy criterion nor a drop gate
DEFAULT_MAX_DROP = 1.0
#: samples scored per candidate (the recipe's calibration data, or its tuning data under a criterion)
SCORE_SAMPLES = 1000


def _load() -> str:
    try:
        import os

        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def score_setup(ctx: RunContext, cfg: QuantizeConfig) -> tuple[Dataset, AccuracyCriterion, str]:
    """The data candidates are scored on, the accuracy limit and where it comes from: the
    step's accuracy criterion and tuning data, else the drop gate (or 1 pp) on the
    calibration data (never the evaluation set the report's accuracy comes from)."""
    crit = cfg.accuracy_criterion
    if crit is not None:
        data = tuning_data(ctx, crit)
        return data.subset(min(len(data), crit.tuning_samples or SCORE_SAMPLES), seed=ctx.seed), crit, \
            "the accuracy criterion"
    gate = ctx.recipe.gates.max_accuracy_drop
    crit = AccuracyCriterion(max_drop=gate if gate is not None else DEFAULT_MAX_DROP)
    data = ctx.calibration_data()
    why = "gates.max_accuracy_drop" if gate is not None else f"{DEFAULT_MAX_DROP:g} pp (no drop gate set)"
    return data.subset(min(len(data), SCORE_SAMPLES), seed=ctx.seed), crit, why


def choose_by_measurement(model: Path, cfg: QuantizeConfig, ctx: RunContext, plan: Any,
                          work: Path) -> tuple[Decision, Path | None, dict[str, Any]]:
    """Measure every candidate format for the target in ``plan`` (a QuantChoice with ``spec``
    and ``device``); returns the decision, the winner's model (None when the decision came from
    the cache: quantize it again) and the winner's quantize details."""
    from compressor.bench.formats import measure_candidates

    spec, device = plan.spec, plan.device
    labels = RUNTIME_FORMATS[spec.runtime]
    b = ctx.recipe.benchmark
    threads, batch = spec.threads or b.threads, b.batch_size
    data, crit, limit_from = score_setup(ctx, cfg)
    store = HostMeasurements()
    key = store.key("format-choice", model=sha256_file(model), target=spec.model_dump(mode="json"),
                    config=cfg.model_dump(mode="json"), data=ctx.recipe.data.model_dump(mode="json"),
                    seed=ctx.seed, threads=threads, batch=batch, labels=list(labels), max_drop=crit.max_drop,
                    rule=2 if cfg.accuracy_criterion is not None else 1)  # 2: a tuner starts from a fast format
    where = f"{spec.name} ({device.label})"
    cached = store.get(key)
    if cached is not None:
        decision = Decision.from_dict(cached)
        decision.cached = True
        return decision, None, {}
    t0 = time.perf_counter()
    pre = work / "preprocessed.onnx"
    work.mkdir(parents=True, exist_ok=True)
    src = pre if preprocess(model, pre)["preprocess"] != "none" else model
    calib = ctx.calibration_data()
    made: dict[str, Path] = {}
    infos: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for label in labels:
        path = work / f"{label.replace(' ', '-').lower()}.onnx"
        try:
            infos[label] = quantize_onnx(src, path, cfg.model_copy(update=FORMATS[label]), calib, skip_preprocess=True)
            made[label] = path
        except Exception as e:  # noqa: BLE001 - a format the quantizer cannot make loses, with its reason
            errors[label] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    measured = measure_candidates(spec, {"FP32": model, **made}, data, data, threads=threads, batch_size=batch,
                                  work=work / "compiled")
    metric = crit.metric or ctx.recipe.data.metric
    evaluator = Evaluator(data, metric, measured["FP32"]["outputs"], crit)
    candidates = []
    for label in labels:
        m = measured.get(label, {"error": errors.get(label, "not made")})
        if "error" in m:
            candidates.append(Candidate(label, error=m["error"]))
            continue
        value = evaluator.score(m["outputs"])
        candidates.append(Candidate(label, speedup=m["speedup"], p10=m["p10"], p90=m["p90"],
                                    latency_ms=m["latency_ms"], metric=round(value, 6),
                                    drop=round(evaluator.drop(value), 4), passed=evaluator.passes(value)))
    decision = decide(candidates, where=where, max_drop=crit.max_drop, fp32="FP32",
                      tuned=cfg.accuracy_criterion is not None)
    decision.fp32_latency_ms = measured["FP32"]["latency_ms"]
    decision.measured_on = f"{device.model or device.label}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, " \
        f"load {_load()}"
    decision.extra = {"limit": {"max_drop": crit.max_drop, "mode": crit.mode, "from": limit_from, "metric": metric,
                                "samples": len(data)},
                      "threads": threads, "batch_size": batch, "seconds": round(time.perf_counter() - t0, 1)}
    store.put(key, decision.to_dict())
    chosen = made.get(decision.chosen or "")
    return decision, chosen, infos.get(decision.chosen or "", {})

