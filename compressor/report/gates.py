"""CI gates over a report: accuracy drop, speedup, latency increase, size.

Latency gates are noise-aware. A p50 measured twice on the same machine differs
by a few percent even for an unchanged model, more on a shared machine, so
``max_latency_increase`` forgives a noise allowance on top of its limit::

    allowance % = max(latency_floor, latency_tolerance * 100 * sqrt(rse_old**2 + rse_new**2))

where ``rse`` is each run's relative standard error of its p50 (``latency_ms.p50_rse``,
from the medians of consecutive blocks of samples, so slow drift counts). The gate
fails when the increase exceeds ``limit + allowance``. Defaults: floor 5 %, 3 x the
combined standard error (see docs/ci.md and benchmarks/results/gate_flapping.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from compressor.metrics import metric_drop
from compressor.errors import ReportError
from compressor.recipe.schema import GateSpec
from compressor.report.model import GateResult, Report, Result

BASELINE_VARIANT = "baseline"
# the gates a limit turns on: the recipe's `gates:` keys are the one list of their names
GATE_NAMES = tuple(GateSpec.model_fields)
# gates computed from limits (and target_ok, for a failed target); any other gate in a report
# was recorded by a step (e.g. "<step>.accuracy_criterion") and is carried forward as recorded
LIMIT_GATES = frozenset({"target_ok", *GATE_NAMES})
LATENCY_GATES = frozenset({"min_speedup", "max_latency_increase", "min_decode_tokens_per_s"})  # differ between two runs of one recipe
NEEDS_PREVIOUS = frozenset({"max_latency_increase"})  # only `compressor check --baseline` can evaluate it
DEFAULT_LATENCY_TOLERANCE = 3.0
DEFAULT_LATENCY_FLOOR = 5.0


@dataclass
class GateLimits:
    """The limits of one check: a field per gate name (GATE_NAMES; a test keeps them equal)
    and the latency noise settings."""

    max_accuracy_drop: float | None = None  # percentage points (percent for lower-is-better)
    min_speedup: float | None = None
    max_latency_increase: float | None = None  # percent versus a baseline report
    max_size_bytes: int | None = None
    max_perplexity_increase_pct: float | None = None  # decoder LLMs: percent over the same target's FP32
    min_decode_tokens_per_s: float | None = None  # decoder LLMs: batch-1 greedy decode speed
    latency_tolerance: float = DEFAULT_LATENCY_TOLERANCE  # multiples of the combined p50 standard error
    latency_floor: float = DEFAULT_LATENCY_FLOOR  # percent always forgiven (run-to-run drift)

    def any(self) -> bool:
        return any(getattr(self, n) is not None for n in GATE_NAMES)

    def limits(self) -> dict[str, float]:
        """The gate limits that are set (what a report records as ``gate_limits``)."""
        return {n: getattr(self, n) for n in GATE_NAMES if getattr(self, n) is not None}

    def without(self, names: Iterable[str]) -> GateLimits:
        """These limits with the gates ``names`` turned off."""
        return replace(self, **{n: None for n in names})

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None, **overrides: Any) -> GateLimits:
        """Limits from a report's ``gate_limits`` (or a recipe's ``gates:``), with ``overrides``
        (e.g. command-line options; None means "not given") taking precedence."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known and v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def record_gates(report: Report, gates: Mapping[str, Any] | None, recorded: Iterable[GateResult] = ()) -> None:
    """What a run (and a sweep) does with the recipe's ``gates:``: record them as the report's
    ``gate_limits``, so ``compressor check`` evaluates them again, and set ``report.gates`` to
    those one run can evaluate (not NEEDS_PREVIOUS: only ``check --baseline`` has a previous
    report) followed by the gates steps ``recorded`` themselves (carried as they are).

    >>> record_gates(report, {"max_accuracy_drop": 0.5})   # doctest: +SKIP
    """
    limits = GateLimits.from_mapping(gates)
    report.gate_limits = limits.limits() or None
    report.gates = evaluate_gates(report, limits.without(NEEDS_PREVIOUS)) + list(recorded)


def step_gates(report: Report) -> list[GateResult]:
    """The gates a step recorded in ``report`` (not computed from limits), carried as recorded."""
    return [g for g in report.gates if g.name not in LIMIT_GATES]


def baseline_of(variant: str) -> str:
    """The baseline a result is compared with: ``baseline``; in a sweep's merged report, where
    variants are ``<sweep variant>/<variant>``, the baseline measured in the same sweep variant
    (on the same node, side by side), ``<sweep variant>/baseline``."""
    prefix, sep, _ = variant.rpartition("/")
    return f"{prefix}/{BASELINE_VARIANT}" if sep else BASELINE_VARIANT


def is_baseline(variant: str) -> bool:
    return variant.rpartition("/")[2] == BASELINE_VARIANT


def candidates(report: Report) -> list[Result]:
    return [r for r in report.results if not is_baseline(r.variant) and r.status == "ok"]


def _tag(r: Result) -> str:
    return f"{r.variant}@{r.target}" + (f"@{r.host}" if r.host else "")


def evaluate_gates(report: Report, limits: GateLimits, previous: Report | None = None) -> list[GateResult]:
    """One GateResult per (gate, compressed result). A failed target fails a ``target_ok`` gate.

    Raises ReportError (exit 2) when a gate needs a value the report does not have.
    """
    if previous is not None and previous.recipe != report.recipe:
        raise ReportError(f"the baseline report is of recipe {previous.recipe!r}, this report of {report.recipe!r}",
                          hint="compare reports of the same recipe")
    out: list[GateResult] = []
    for r in report.results:
        if r.status == "failed":
            out.append(GateResult(name="target_ok", limit=0, value=None, passed=False, detail=f"{_tag(r)}: {r.error}"))
    if limits.any() and not candidates(report) and not out:
        raise ReportError("the report has no compressed result that ran: nothing to gate")
    for r in candidates(report):
        base = report.result(baseline_of(r.variant), r.target, r.host)
        tag = _tag(r)
        if limits.max_accuracy_drop is not None:
            if base is None or base.accuracy is None or r.accuracy is None:
                raise ReportError(f"gate max_accuracy_drop needs accuracy for {tag} and its baseline; the report has none",
                                  hint="benchmark with evaluation data, or drop --max-accuracy-drop")
            if base.accuracy.metric != r.accuracy.metric:
                raise ReportError(f"gate max_accuracy_drop: {tag} measured {r.accuracy.metric}, its baseline "
                                  f"{base.accuracy.metric}")
            drop = metric_drop(r.accuracy.metric, base.accuracy.value, r.accuracy.value)
            unit = "pp" if r.accuracy.higher_is_better else "% worse"
            out.append(GateResult(name="max_accuracy_drop", limit=limits.max_accuracy_drop, value=round(drop, 4),
                                  passed=drop <= limits.max_accuracy_drop, detail=f"{tag} {r.accuracy.metric} {unit}"))
        if limits.min_speedup is not None:
            if base is None or base.latency_ms is None or r.latency_ms is None:
                raise ReportError(f"gate min_speedup needs latency for {tag} and its baseline; the report has none",
                                  hint="min_speedup needs a report of `compressor run` (baseline and compressed)")
            speedup, how = _speedup(r, base)
            out.append(GateResult(name="min_speedup", limit=limits.min_speedup, value=round(speedup, 3),
                                  passed=speedup >= limits.min_speedup, detail=f"{tag} {how}"))
        if limits.max_size_bytes is not None:
            if r.size_bytes is None:
                raise ReportError(f"gate max_size_bytes needs size_bytes for {tag}; the report has none")
            out.append(GateResult(name="max_size_bytes", limit=limits.max_size_bytes, value=r.size_bytes,
                                  passed=r.size_bytes <= limits.max_size_bytes, detail=tag))
        if limits.max_latency_increase is not None:
            out.append(_latency_increase(r, previous, limits, tag))
        out += _llm_gates(r, base, limits, tag)
    return out


def _llm_gates(r: Result, base: Result | None, limits: GateLimits, tag: str) -> list[GateResult]:
    """The decoder-LLM gates: perplexity increase over the same target's FP32, decode speed."""
    out = []
    if limits.max_perplexity_increase_pct is not None:
        if r.llm is None or base is None or base.llm is None:
            raise ReportError(f"gate max_perplexity_increase_pct needs decoder-LLM perplexity for {tag} and its "
                              "baseline; the report has none", hint="use it with model: hf / gguf recipes")
        inc = (r.llm.perplexity / base.llm.perplexity - 1.0) * 100.0
        out.append(GateResult(name="max_perplexity_increase_pct", limit=limits.max_perplexity_increase_pct,
                              value=round(inc, 3), passed=inc <= limits.max_perplexity_increase_pct,
                              detail=f"{tag} perplexity {base.llm.perplexity:.3f} -> {r.llm.perplexity:.3f}"))
    if limits.min_decode_tokens_per_s is not None:
        if r.llm is None or r.llm.decode_tokens_per_s is None:
            raise ReportError(f"gate min_decode_tokens_per_s needs decode speed for {tag}; the report has none",
                              hint="use it with model: hf / gguf recipes")
        v = r.llm.decode_tokens_per_s
        out.append(GateResult(name="min_decode_tokens_per_s", limit=limits.min_decode_tokens_per_s, value=round(v, 2),
                              passed=v >= limits.min_decode_tokens_per_s, detail=f"{tag} batch-1 greedy decode"))
    return out


def _speedup(r: Result, base: Result) -> tuple[float, str]:
    """The speedup of ``r`` over its baseline, and how it was measured: paired (interleaved
    timing in one process) when the report has it, else the ratio of the two p50s."""
    p = r.paired
    if p is not None and p.against == BASELINE_VARIANT:
        return p.speedup, (f"paired: median of {p.rounds} interleaved rounds vs baseline "
                           f"(p10-p90 {p.p10:.3g}-{p.p90:.3g}x)")
    assert base.latency_ms is not None and r.latency_ms is not None
    return base.latency_ms.p50 / r.latency_ms.p50, "p50 vs baseline (sequential runs)"


def _latency_increase(r: Result, previous: Report | None, limits: GateLimits, tag: str) -> GateResult:
    if previous is None:
        raise ReportError("gate max_latency_increase compares with a previous report", hint="pass --baseline BASE.json")
    old = previous.result(r.variant, r.target, r.host)
    if old is None or old.status != "ok" or old.latency_ms is None or r.latency_ms is None:
        raise ReportError(f"gate max_latency_increase: {tag} has no latency in the baseline report",
                          hint="use a baseline report that measured the same variants and targets")
    increase = (r.latency_ms.p50 / old.latency_ms.p50 - 1.0) * 100.0
    allowance = latency_allowance(old, r, limits.latency_tolerance, limits.latency_floor)
    return GateResult(name="max_latency_increase", limit=limits.max_latency_increase, value=round(increase, 2),
                      passed=increase <= limits.max_latency_increase + allowance,
                      detail=f"{tag} p50 {old.latency_ms.p50:.4g} -> {r.latency_ms.p50:.4g} ms, noise allowance "
                             f"{allowance:.1f}%")


def latency_allowance(old: Result, new: Result, tolerance: float = DEFAULT_LATENCY_TOLERANCE,
                      floor: float = DEFAULT_LATENCY_FLOOR) -> float:
    """Percent of p50 increase forgiven as measurement noise (see the module docstring)."""
    combined = math.hypot(p50_rse(old), p50_rse(new))
    return max(floor, tolerance * 100.0 * combined)


def p50_rse(r: Result) -> float:
    """Relative standard error of a result's p50 (0 when unknown)."""
    lat = r.latency_ms
    if lat is None:
        return 0.0
    if lat.p50_rse is not None:
        return lat.p50_rse
    if not lat.n or lat.cv is None:
        return 0.0
    # older reports: the i.i.d. standard error of a median, ~1.2533 * std / sqrt(n)
    return 1.2533 * lat.cv / lat.n ** 0.5
