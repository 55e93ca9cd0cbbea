"""Paired (interleaved) timing: several compiled artifacts on one target, in one process.

Two latencies measured one after the other, in separate processes, drift apart on a
shared machine (benchmarks/paired_speedup.py recorded MiniLM INT8 at 2.26x and 1.43x
FP32 an hour apart). Timing both models in alternating rounds in one process
(:func:`compressor.bench.latency.measure_interleaved`) lets the load reach both
alike; the per-round speedups give the ratio and its spread. ``compressor bench A B
--interleave`` and the ``min_speedup`` gate of ``compressor run`` use this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.bench.latency import PairedTiming, measure_interleaved
from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, TargetFailed
from compressor.report.model import PairedSpeedup
from compressor.bench.artifacts import read_artifact_record
from compressor.targets.base import Artifact, Session, timed_call
from compressor.targets.registry import import_target_class
from compressor.targets.spec import TargetSpec
from compressor.utils.io import atomic_write_json

# rounds x calls per round: 30 x 10 = 300 timed calls per model, about what `benchmark.iterations` times
DEFAULT_ROUNDS = 30
DEFAULT_PER_ROUND = 10


def paired_record(timing: PairedTiming, name: str, *, rounds: int, per_round: int) -> dict[str, Any]:
    """The report's ``paired`` field of ``name``: its speedup over the first model timed."""
    first = next(iter(timing.stats))
    per_round_speedups = timing.speedups[name]
    return {
        "against": first,
        "speedup": round(float(np.median(per_round_speedups)), 4),
        "p10": round(float(np.percentile(per_round_speedups, 10)), 4),
        "p90": round(float(np.percentile(per_round_speedups, 90)), 4),
        "rounds": rounds, "per_round": per_round,
        "p50_ms": timing.stats[name].p50, "against_p50_ms": timing.stats[first].p50,
    }


def session_feeds(session: Session, data: Dataset, batch_size: int) -> dict[str, np.ndarray]:
    """The first ``batch_size`` samples of ``data`` under the session's input names."""
    feeds = data.first(batch_size)
    return {n: feeds[n] if n in feeds else next(iter(feeds.values())) for n in session.input_names}


def time_interleaved(sessions: dict[str, Session], data: Dataset, *, batch_size: int = 1,
                     rounds: int = DEFAULT_ROUNDS, per_round: int = DEFAULT_PER_ROUND,
                     warmup: int = 5) -> PairedTiming:
    """Interleaved timing of loaded sessions on the same inputs (the first is the reference)."""
    calls = {name: timed_call(s, session_feeds(s, data, batch_size)) for name, s in sessions.items()}
    return measure_interleaved(calls, rounds=rounds, per_round=per_round, warmup=warmup)


# ----------------------------------------------------------------------------- artifacts on disk


# ----------------------------------------------------------------------------- the run's paired step


@dataclass
class PairedJob:
    """Interleaved timing of a target's compiled artifacts (plain data, for a child process)."""

    runtime: str  # "module:Class" of the Target subclass
    spec: TargetSpec
    artifacts: dict[str, Artifact]  # the first is the reference (the baseline)
    data: Dataset  # inputs: the first batch is timed
    threads: int
    batch_size: int
    rounds: int = DEFAULT_ROUNDS
    per_round: int = DEFAULT_PER_ROUND
    warmup: int = 5
    variant: str = "paired timing"  # for run_isolated's messages


def run_paired_job(job: PairedJob, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Load every artifact and time them interleaved; returns ``{name: paired record}``
    for every artifact but the first."""
    target = import_target_class(job.runtime)(job.spec)
    sessions = {name: target.load(a, threads=job.threads) for name, a in job.artifacts.items()}
    timing = time_interleaved(sessions, job.data, batch_size=job.batch_size, rounds=job.rounds,
                              per_round=job.per_round, warmup=job.warmup)
    if progress is not None:
        progress("paired", job.rounds, job.rounds)
    return {name: paired_record(timing, name, rounds=job.rounds, per_round=job.per_round)
            for name in list(job.artifacts)[1:]}


def pair_with_baseline(results: list[Any], specs: list[TargetSpec], run_dir: Path, data: Dataset, *,
                       threads: int, batch_size: int, warmup: int, isolate: bool, timeout_s: float,
                       log: Callable[[str], None] = lambda _: None, baseline: str = "baseline") -> None:
    """Set ``result.paired`` on every compressed result that ran: its speedup over the
    baseline on the same target, timed interleaved in one (child) process. A failure
    leaves ``paired`` unset (gates then compare the sequential p50s) and is logged."""
    from compressor.bench.isolated import run_isolated
    from compressor.targets.registry import RUNTIMES

    for spec in specs:
        ok = [r for r in results if r.target == spec.name and r.status == "ok" and r.latency_ms is not None]
        base = next((r for r in ok if r.variant == baseline), None)
        others = [r for r in ok if r.variant != baseline]
        if base is None or not others:
            continue
        try:
            artifacts = {r.variant: read_artifact_record(run_dir / f"{r.artifact}.artifact.json", run_dir)
                         for r in [base, *others]}
            job = PairedJob(RUNTIMES[spec.runtime], spec, artifacts, data.subset(batch_size),
                            spec.threads or threads, batch_size, warmup=min(warmup, 10))
            paired = (run_isolated(job, timeout_s=timeout_s, fn=run_paired_job) if isolate
                      else run_paired_job(job))
        except CompressorError as e:
            log(f"[yellow]paired timing on {spec.name} failed[/] ({e}); min_speedup uses the sequential p50s")
            continue
        for r in others:
            r.paired = PairedSpeedup.model_validate(paired[r.variant])
