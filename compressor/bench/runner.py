"""Benchmark one compiled artifact on one target: accuracy, parity, latency, size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compressor.bench.latency import measure_latency
from compressor.metrics import score_outputs
from compressor.data.dataset import Dataset
from compressor.errors import DataError, TargetFailed
from compressor.recipe.schema import BenchmarkSpec
from compressor.targets.base import Session, timed_call


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
    result = score_outputs(outputs, metric=metric, labels=eval_data.labels, inputs=eval_data.inputs,
                           reference=reference, precision=precision, extra_metrics=extra_metrics)
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
