"""Candidate INT8 models measured on a target: each compiled and loaded by the target itself,
its outputs over the scoring data, and its speed against FP32 in interleaved rounds (one
process, the same inputs, :func:`compressor.bench.paired.time_interleaved`; each candidate
in its own pair with FP32, as the run's paired benchmark times the shipped model).

The quantize step's measured format choice calls this (steps reach targets only through
bench); short rounds keep a candidate to a few seconds.

    >>> out = measure_candidates(spec, {"FP32": fp32, "U8S8": q}, data, data, threads=2,
    ...                          batch_size=1, work=tmp)            # doctest: +SKIP
    >>> out["U8S8"]["speedup"]                                       # doctest: +SKIP
    1.9
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.bench.paired import paired_record, time_interleaved
from compressor.bench.runner import run_batches
from compressor.data.dataset import Dataset
from compressor.targets.base import ModelArtifact
from compressor.targets.registry import make_target
from compressor.targets.spec import TargetSpec

# 8 rounds x 10 calls: enough for a stable median ratio on small models; bounded by ROUND_BUDGET_S
ROUNDS, PER_ROUND = 8, 10
# a round of every model should take at most this long: larger models get fewer calls per round
ROUND_BUDGET_S = 0.6
# small models get more rounds, up to MAX_ROUNDS, while a pair's timing fits in PAIR_BUDGET_S
PAIR_BUDGET_S, MAX_ROUNDS = 1.5, 60


def measure_candidates(spec: TargetSpec, models: dict[str, Path], score_data: Dataset | None, time_data: Dataset, *,
                       threads: int, batch_size: int, work: Path, rounds: int = ROUNDS,
                       per_round: int = PER_ROUND) -> dict[str, dict[str, Any]]:
    """``{name: {"outputs": [...], "speedup", "p10", "p90", "latency_ms"}}`` for every model;
    the first is FP32 (the reference of the speedups). A model the target cannot compile or
    run gets ``{"error": ...}`` and is left out of the timing."""
    target = make_target(spec)
    work.mkdir(parents=True, exist_ok=True)
    sessions, out = {}, {}
    for name, path in models.items():
        slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        try:
            art = target.compile(ModelArtifact(slug, "fp32" if name == next(iter(models)) else "int8", path, []),
                                 work, precision="fp32" if name == next(iter(models)) else "int8")
            sessions[name] = target.load(art, threads=threads)
            out[name] = {"outputs": run_batches(sessions[name], score_data, _score_batch(target))
                         if score_data is not None else None}
        except Exception as e:  # noqa: BLE001 - a candidate that fails is a result, not a crash
            if name == next(iter(models)):
                raise
            sessions.pop(name, None)
            out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]}
    fp32 = next(iter(sessions))
    per_round, rounds = _calls_per_round({n: sessions[n] for n in list(sessions)[:2]}, time_data, batch_size,
                                         per_round, rounds)
    fp32_ms = []
    for name in list(sessions)[1:]:
        # each candidate against FP32 in its own pair, as the run's paired benchmark times the
        # shipped model: with every candidate in one interleave, the idle sessions' spinning
        # thread pools and evicted caches slowed FP32 more than INT8 (quickstart: 2.17x there,
        # 1.51x in a pair, on a quiet 2-core Xeon), so the choice promised a speed the run
        # then did not measure
        timing = time_interleaved({fp32: sessions[fp32], name: sessions[name]}, time_data, batch_size=batch_size,
                                  rounds=rounds, per_round=per_round, warmup=3)
        rec = paired_record(timing, name, rounds=rounds, per_round=per_round)
        out[name].update(speedup=rec["speedup"], p10=rec["p10"], p90=rec["p90"], latency_ms=round(rec["p50_ms"], 4))
        fp32_ms.append(timing.stats[fp32].p50)
    out[fp32].update(speedup=1.0, p10=1.0, p90=1.0,
                     latency_ms=round(float(np.median(fp32_ms)), 4) if fp32_ms else None)
    return out


def _score_batch(target: Any) -> int:
    return min(64, getattr(target, "max_batch", None) or 64)


def _calls_per_round(sessions: dict[str, Any], data: Dataset, batch_size: int, wanted: int,
                     rounds: int) -> tuple[int, int]:
    """Calls per round and rounds for one pair: fewer calls per round for slow models, so every
    candidate stays a few seconds; more rounds (up to MAX_ROUNDS, within PAIR_BUDGET_S) for
    sub-millisecond models, whose pair ratios otherwise scatter by +-15% on a quiet machine."""
    import time

    from compressor.bench.paired import session_feeds
    from compressor.targets.base import timed_call

    first = next(iter(sessions.values()))
    call = timed_call(first, session_feeds(first, data, batch_size))
    call()
    t0 = time.perf_counter()
    call()
    one = max(time.perf_counter() - t0, 1e-6)
    per_round = int(np.clip(int(ROUND_BUDGET_S / (one * len(sessions))), 2, wanted))
    fits = int(PAIR_BUDGET_S / (one * len(sessions) * per_round))
    return per_round, int(np.clip(fits, rounds, max(rounds, MAX_ROUNDS)))
