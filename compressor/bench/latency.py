"""Latency measurement: warm up, then time a fixed number of runs or a minimum
duration, whichever is longer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class LatencyStats:
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    cv: float  # coefficient of variation of the samples (std / mean)
    n: int
    p50_rse: float | None = None  # relative standard error of p50, see p50_relative_se

    @classmethod
    def from_samples_ms(cls, samples: np.ndarray) -> LatencyStats:
        s = np.asarray(samples, dtype=np.float64)
        mean = float(s.mean())
        return cls(
            p50=float(np.percentile(s, 50)), p90=float(np.percentile(s, 90)), p99=float(np.percentile(s, 99)),
            mean=mean, std=float(s.std()), min=float(s.min()), max=float(s.max()),
            cv=float(s.std() / mean) if mean > 0 else 0.0, n=int(len(s)), p50_rse=p50_relative_se(s),
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def p50_relative_se(samples: np.ndarray, max_blocks: int = 10) -> float | None:
    """Relative standard error of the median, from the medians of consecutive blocks.

    Samples are not independent on a shared machine: load from other processes
    comes and goes over seconds, so the textbook SE of a median (1.25 * std/sqrt(n))
    is far too optimistic. The spread of the medians of consecutive blocks sees that
    slow drift. None when there are fewer than 40 samples.
    """
    s = np.asarray(samples, dtype=np.float64)
    blocks = min(max_blocks, len(s) // 10)
    if blocks < 4:
        return None
    medians = np.array([np.median(b) for b in np.array_split(s, blocks)])
    p50 = float(np.median(s))
    return float(medians.std(ddof=1) / np.sqrt(blocks) / p50) if p50 > 0 else None


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 50,
    iterations: int = 200,
    min_duration_s: float = 1.0,
    max_iterations: int = 100_000,
    progress: Callable[[int], None] | None = None,
) -> tuple[LatencyStats, np.ndarray]:
    """Time ``fn``: ``warmup`` untimed calls, then at least ``iterations`` timed calls
    and at least ``min_duration_s`` seconds. Returns stats in milliseconds and the raw
    samples (kept for the latency-distribution plot)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    budget_ns = int(min_duration_s * 1e9)
    while len(samples) < max_iterations and (len(samples) < iterations or clock() - start < budget_ns):
        t0 = clock()
        fn()
        samples.append((clock() - t0) / 1e6)
        if progress is not None:
            progress(len(samples))
    arr = np.asarray(samples)
    return LatencyStats.from_samples_ms(arr), arr


@dataclass
class PairedTiming:
    """Interleaved timing of several calls: per-call stats, and per-round ratios against
    the first call (``speedups[name]``: first's round median / name's round median)."""

    stats: dict[str, LatencyStats]
    speedups: dict[str, np.ndarray]

    def speedup(self, name: str) -> float:
        """The speedup of ``name`` over the first call: ratio of the overall medians."""
        first = next(iter(self.stats))
        return self.stats[first].p50 / self.stats[name].p50


# Pause before each block of interleaved calls (and before a quick latency): a runtime's worker
# threads may keep spinning for a while after its last call, sharing the cores with the next
# model's threads. compressor's ONNX Runtime sessions do not spin (compressor/utils/ort_sessions.py,
# with the measurements); the pause and an untimed call per block cover other runtimes' pools.
SETTLE_S = 0.01


def settle() -> None:
    """Let other sessions' worker threads stop spinning before a timing starts (:data:`SETTLE_S`)."""
    time.sleep(SETTLE_S)


def measure_interleaved(calls: dict[str, Callable[[], object]], *, rounds: int = 30, per_round: int = 10,
                        warmup: int = 5) -> PairedTiming:
    """Time ``calls`` in alternating rounds (each round times every call ``per_round``
    times; the order reverses every other round), so load on a shared machine reaches
    every call alike and ratios between them hold where sequential runs drift apart. Each
    block starts after a pause and one untimed call (:data:`SETTLE_S`): the previous call's
    worker threads would otherwise still be spinning on the same cores."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    blocks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    clock = time.perf_counter_ns
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn, block = calls[name], np.empty(per_round)
            settle()
            fn()  # wakes this call's threads; untimed
            for i in range(per_round):
                t0 = clock()
                fn()
                block[i] = (clock() - t0) / 1e6
            blocks[name].append(block)
    stats = {n: LatencyStats.from_samples_ms(np.concatenate(b)) for n, b in blocks.items()}
    first = blocks[names[0]]
    speedups = {n: np.array([np.median(a) / np.median(b) for a, b in zip(first, blocks[n])]) for n in names}
    return PairedTiming(stats, speedups)
