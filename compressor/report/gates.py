"""CI gates over a report: accuracy drop, speedup, latency increase, size."""

from __future__ import annotations

from dataclasses import dataclass

from compressor.bench.metrics import metric_drop
from compressor.errors import ReportError
from compressor.report.model import GateResult, Report, Result

BASELINE_VARIANT = "baseline"


@dataclass
class GateLimits:
    max_accuracy_drop: float | None = None  # percentage points (percent for lower-is-better)
    min_speedup: float | None = None
    max_latency_increase: float | None = None  # percent versus a baseline report
    max_size_bytes: int | None = None
    latency_tolerance: float = 3.0  # multiples of the measured spread forgiven (noise-aware)

    def any(self) -> bool:
        return any(v is not None for v in (self.max_accuracy_drop, self.min_speedup, self.max_latency_increase,
                                           self.max_size_bytes))


def candidates(report: Report) -> list[Result]:
    return [r for r in report.results if r.variant != BASELINE_VARIANT and r.status == "ok"]


def evaluate_gates(report: Report, limits: GateLimits, previous: Report | None = None) -> list[GateResult]:
    """One GateResult per (gate, compressed result). A failed target fails every gate."""
    out: list[GateResult] = []
    failed = [r for r in report.results if r.status == "failed"]
    for r in failed:
        out.append(GateResult(name="target_ok", limit=0, value=None, passed=False,
                              detail=f"{r.variant}@{r.target}: {r.error}"))
    for r in candidates(report):
        base = report.result(BASELINE_VARIANT, r.target)
        tag = f"{r.variant}@{r.target}"
        if limits.max_accuracy_drop is not None:
            if base is None or base.accuracy is None or r.accuracy is None:
                raise ReportError(f"gate max_accuracy_drop needs accuracy for {tag} and its baseline; the report has none")
            drop = metric_drop(r.accuracy.metric, base.accuracy.value, r.accuracy.value)
            out.append(GateResult(name="max_accuracy_drop", limit=limits.max_accuracy_drop, value=round(drop, 4),
                                  passed=drop <= limits.max_accuracy_drop, detail=f"{tag} {r.accuracy.metric}"))
        if limits.min_speedup is not None:
            if base is None or base.latency_ms is None or r.latency_ms is None:
                raise ReportError(f"gate min_speedup needs latency for {tag} and its baseline; the report has none")
            speedup = base.latency_ms.p50 / r.latency_ms.p50
            out.append(GateResult(name="min_speedup", limit=limits.min_speedup, value=round(speedup, 3),
                                  passed=speedup >= limits.min_speedup, detail=f"{tag} p50 vs baseline"))
        if limits.max_size_bytes is not None:
            if r.size_bytes is None:
                raise ReportError(f"gate max_size_bytes needs size_bytes for {tag}; the report has none")
            out.append(GateResult(name="max_size_bytes", limit=limits.max_size_bytes, value=r.size_bytes,
                                  passed=r.size_bytes <= limits.max_size_bytes, detail=tag))
        if limits.max_latency_increase is not None:
            out.append(_latency_increase(r, previous, limits, tag))
    return out


def _latency_increase(r: Result, previous: Report | None, limits: GateLimits, tag: str) -> GateResult:
    if previous is None:
        raise ReportError("gate max_latency_increase compares with a previous report: pass --baseline BASE.json")
    old = previous.result(r.variant, r.target)
    if old is None or old.latency_ms is None or r.latency_ms is None:
        raise ReportError(f"gate max_latency_increase: {tag} has no latency in both reports")
    increase = (r.latency_ms.p50 / old.latency_ms.p50 - 1.0) * 100.0
    # noise-aware: the measured p50 wobbles run to run; forgive `latency_tolerance` times the
    # larger coefficient of variation of the two p50s (estimated from each run's spread)
    noise = limits.latency_tolerance * 100.0 * max(_p50_cv(r), _p50_cv(old))
    allowed = limits.max_latency_increase + noise
    return GateResult(name="max_latency_increase", limit=limits.max_latency_increase, value=round(increase, 2),
                      passed=increase <= allowed, detail=f"{tag} p50, noise allowance {noise:.1f}%")


def _p50_cv(r: Result) -> float:
    lat = r.latency_ms
    if lat is None or not lat.n or lat.cv is None:
        return 0.0
    # standard error of a median ~ 1.2533 * std / sqrt(n), relative to the median
    return 1.2533 * lat.cv / max(lat.n, 1) ** 0.5
