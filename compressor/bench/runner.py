"""Benchmark one compiled artifact on one target: accuracy, parity, latency, size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compressor.bench.latency import measure_latency
from compressor.metrics import compare_outputs, compute_metric, metric_info, scoring_labels
from compressor.data.dataset import Dataset
from compressor.errors import DataError, TargetFailed
from compressor.recipe.schema import BenchmarkSpec
from compressor.targets.base import Session, timed_call

# parity tolerances by precision: max abs diff relative to the reference's largest magnitude
PARITY_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 2e-2, "int8": None}
MIN_INT8_AGREEMENT = 0.90


def run_batches(session: Session, data: Dataset, batch_size: int,
                progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """All outputs of ``session`` over ``data``, concatenated per output."""
    missing = [n for n in session.input_names if n not in data.inputs]
    if missing:
        if len(session.input_names) == 1 and len(data.inputs) == 1:
            data = Dataset({session.input_names[0]: next(iter(data.inputs.values()))}, data.labels, data.name)
        else:
            raise DataError(f"model inputs {missing} are not in the data (it has {data.input_names})")
    chunks: list[list[np.ndarray]] = []
    done = 0
    for feeds, _ in data.batches(batch_size):
        try:
            outs = session.run({n: feeds[n] for n in session.input_names})
        except Exception as e:
            raise TargetFailed(f"inference failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        chunks.append([np.asarray(o) for o in outs])
        done += len(next(iter(feeds.values())))
        if progress:
            progress(done)
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def evaluate(outputs: list[np.ndarray], data: Dataset, metric: str, reference: list[np.ndarray] | None) -> dict[str, Any]:
    labels = scoring_labels(metric, data.labels, data.inputs, outputs[0].size)
    value = compute_metric(metric, outputs[0], labels, None if reference is None else reference[0])
    return {"metric": metric, "value": value, "higher_is_better": metric_info(metric).higher_is_better,
            "samples": len(data)}


def parity(outputs: list[np.ndarray], reference: list[np.ndarray] | None, precision: str) -> dict[str, Any] | None:
    if reference is None:
        return None
    res = compare_outputs(reference, [o.astype(np.float32) for o in outputs])
    tol = PARITY_TOLERANCE.get(precision)
    if tol is not None:
        scale = max(1.0, float(np.max(np.abs(reference[0]))))
        res["tolerance"] = tol * scale
        res["passed"] = bool(res["max_abs_diff"] <= tol * scale)
    else:
        res["passed"] = bool(res.get("top1_agreement", res["cosine"]) >= MIN_INT8_AGREEMENT)
    return res


def benchmark_session(
    session: Session,
    *,
    eval_data: Dataset,
    metric: str,
    reference: list[np.ndarray] | None,
    precision: str,
    bench: BenchmarkSpec,
    max_batch: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    extra_metrics: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Accuracy on ``eval_data``, parity against ``reference``, and latency at ``bench.batch_size``
    (``max_batch``: the most samples the target's artifact runs at once, for the accuracy pass)."""
    n = len(eval_data)
    batch_size = bench.batch_size
    outputs = run_batches(session, eval_data, bench.eval_batch_for(max_batch),
                          None if progress is None else (lambda k: progress("evaluate", k, n)))
    result: dict[str, Any] = {"accuracy": evaluate(outputs, eval_data, metric, reference)}
    result["parity"] = parity(outputs, reference, precision)
    if extra_metrics:
        # every requested metric by name, the primary one included, e.g. {"top1": .., "macro_f1": ..}
        result["metrics"] = {result["accuracy"]["metric"]: result["accuracy"]["value"]}
        for m in extra_metrics:
            result["metrics"][m] = evaluate(outputs, eval_data, m, reference)["value"]
    feeds = eval_data.first(batch_size)
    feeds = {n_: feeds[n_] if n_ in feeds else next(iter(feeds.values())) for n_ in session.input_names}
    total = bench.iterations
    stats, samples = measure_latency(
        timed_call(session, feeds), warmup=bench.warmup, iterations=bench.iterations,
        min_duration_s=bench.min_duration_s,
        progress=None if progress is None else (lambda k: progress("latency", min(k, total), total)),
    )
    result["latency_ms"] = stats.to_dict()
    result["throughput_per_s"] = batch_size * 1000.0 / stats.mean if stats.mean > 0 else None
    result["latency_samples_ms"] = samples.tolist()
    return result
