"""Which INT8 format to ship, decided from measurements: the candidates each runtime offers
and the rule that picks one. Pure logic (no runtime, no timing), so it is tested by feeding it
measured ratios.

The rule: among the candidates that meet the accuracy limit, the fastest (speedup over FP32
timed interleaved on the target); none meeting it: the smallest drop. INT8 *pays* only when
the winner is at least :data:`PAYS_AT` times FP32; otherwise the run says so in one line that
names the fastest option measured (often FP32 itself).

    >>> d = decide([Candidate("U8S8", speedup=0.99, drop=3.0, passed=False),
    ...             Candidate("U8U8", speedup=0.65, drop=0.0, passed=True)], where="onnxruntime-cpu")
    >>> d.chosen, d.int8_pays
    ('U8U8', False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from compressor.utils.int8_formats import FORMAT_KEYS, FORMATS, PAYS_AT, RUNTIME_FORMATS

__all__ = ["FORMATS", "FORMAT_KEYS", "RUNTIME_FORMATS", "PAYS_AT", "Candidate", "Decision", "decide", "format_label",
           "from_profile", "candidate_summary"]

Source = Literal["measured", "profile", "table", "pinned"]


def format_label(settings: dict[str, Any]) -> str | None:
    """The :data:`FORMATS` name of ``settings`` (None when it is none of them)."""
    want = {k: settings.get(k, False if k == "reduce_range" else None) for k in FORMAT_KEYS}
    return next((name for name, f in FORMATS.items() if f == want), None)


@dataclass
class Candidate:
    """One INT8 format as measured: ``speedup`` over FP32 (median of interleaved rounds, with
    ``p10``/``p90``), accuracy ``drop`` against FP32 and whether it ``passed`` the limit (None:
    not scored, e.g. from a device profile), ``saturates`` (from a profile's saturation check)."""

    label: str
    speedup: float | None = None
    drop: float | None = None
    passed: bool | None = None
    p10: float | None = None
    p90: float | None = None
    latency_ms: float | None = None
    metric: float | None = None
    saturates: bool | None = None
    error: str | None = None
    verdict: str = ""

    @property
    def usable(self) -> bool:
        return self.error is None and self.passed is not False and self.saturates is not True

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Decision:
    """The format chosen for one target, how (``source``), every candidate with its verdict,
    whether INT8 pays there and the one line the terminal prints."""

    chosen: str | None
    source: Source
    candidates: list[Candidate] = field(default_factory=list)
    int8_pays: bool | None = None
    line: str = ""
    fastest: str | None = None
    fp32_latency_ms: float | None = None
    measured_on: str | None = None  # profile: its path and date; measured: the CPU
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the accuracy limit, seconds spent

    def to_dict(self) -> dict[str, Any]:
        out = {**self.extra, "chosen": self.chosen, "source": self.source, "int8_pays": self.int8_pays, "line": self.line,
               "candidates": [c.to_dict() for c in self.candidates]}
        for k in ("fastest", "fp32_latency_ms", "measured_on"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.cached:
            out["cached"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        cands = [Candidate(**c) for c in d.get("candidates", [])]
        known = {"chosen", "source", "candidates", "int8_pays", "line", "fastest", "fp32_latency_ms", "measured_on",
                 "cached"}
        return cls(d.get("chosen"), d["source"], cands, d.get("int8_pays"), d.get("line", ""), d.get("fastest"),
                   d.get("fp32_latency_ms"), d.get("measured_on"), d.get("cached", False),
                   {k: v for k, v in d.items() if k not in known})

    @property
    def settings(self) -> dict[str, Any]:
        return dict(FORMATS[self.chosen]) if self.chosen in FORMATS else {}


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def decide(candidates: list[Candidate], *, where: str, source: Source = "measured", max_drop: float | None = None,
           fp32: str = "FP32", tuned: bool = False) -> Decision:
    """Pick the fastest usable candidate (ties: the smaller drop); none usable: the smallest drop
    among those that ran, or, when an accuracy-aware tuner starts from the choice (``tuned``),
    the fastest of those whose drop is near the smallest (:func:`_near_best`): the tuner can win
    accuracy back with its variants and FP32 fallback, never a slow kernel. Sets every
    candidate's ``verdict`` and the decision's one-line summary. ``where`` names the target (and
    device) in that line; ``fp32`` the FP32 option timed with them."""
    ran = [c for c in candidates if c.error is None]
    usable = [c for c in ran if c.usable]
    timed = [c for c in ran if c.speedup is not None]
    if usable:
        winner = max(usable, key=lambda c: (c.speedup or 0.0, -(c.drop or 0.0)))
    elif ran and tuned and any(c.drop is not None for c in ran):
        winner = max(_near_best(ran, max_drop or 0.0), key=lambda c: (c.speedup or 0.0, -(c.drop or 0.0)))
    elif ran:
        winner = min(ran, key=lambda c: (c.drop if c.drop is not None else float("inf"), -(c.speedup or 0.0)))
    else:
        winner = None
    limit = f" > {max_drop:g}" if max_drop is not None else ""
    for c in candidates:
        if c.error is not None:
            c.verdict = f"could not be made or run: {c.error}"
        elif c is winner:
            c.verdict = ("chosen: the fastest that meets the accuracy limit" if c.usable
                         else "chosen: none meets the accuracy limit; the fastest near the smallest drop, for the "
                         "tuner to start from" if tuned
                         else "chosen: none meets the accuracy limit; the smallest drop")
        elif c.saturates:
            c.verdict = "the device saturates this format's 16-bit sums"
        elif c.passed is False:
            c.verdict = f"accuracy drop {c.drop:.2f}{limit}" if c.drop is not None else "accuracy limit not met"
        elif winner is not None and c.speedup is not None and winner.speedup is not None:
            c.verdict = f"slower than {winner.label} ({_x(c.speedup)} vs {_x(winner.speedup)})"
        else:
            c.verdict = "not chosen"
    pays = None if winner is None or winner.speedup is None else winner.speedup >= PAYS_AT
    best_int8 = max(timed, key=lambda c: c.speedup or 0.0) if timed else None
    fastest = None
    if best_int8 is not None:
        fastest = f"{fp32} on {where}" if (best_int8.speedup or 0.0) < 1.0 else f"{best_int8.label} on {where}"
    if winner is None:
        line = f"{where}: no INT8 candidate could be made or run"
    elif pays is False:
        assert best_int8 is not None
        line = (f"INT8 does not pay on {where}: the fastest INT8 format, {best_int8.label}, ran "
                f"{_x(best_int8.speedup)} {fp32}; fastest measured: {fastest}")
    elif pays:
        line = f"{where}: {winner.label} chosen, {_x(winner.speedup)} {fp32}" + (
            f", drop {winner.drop:.2f}" if winner.drop is not None else "")
    else:
        line = f"{where}: {winner.label} chosen (speed not measured)"
    return Decision(winner.label if winner else None, source, candidates, pays, line, fastest)


def _near_best(ran: list[Candidate], max_drop: float) -> list[Candidate]:
    """The candidates whose drop is at most 1.5x the smallest plus the criterion's ``max_drop``:
    within that, format differences are of the size the tuner's variants and fallback win back
    (and of the scoring noise on a small tuning set); a format that breaks the model (U8S8
    saturating its 16-bit sums without VNNI) stays out.

    >>> [c.label for c in _near_best([Candidate("A", drop=10.0), Candidate("B", drop=14.0),
    ...                               Candidate("C", drop=60.0)], 1.0)]
    ['A', 'B']
    """
    best = min(c.drop for c in ran if c.drop is not None)
    return [c for c in ran if c.drop is not None and c.drop <= 1.5 * best + max_drop + 1e-9]


def candidate_summary(c: Candidate) -> str:
    """``U8U8 0.75x FP32, drop 0.39: slower than U8S8 (0.75x vs 2.13x)`` (one terminal item)."""
    if c.error is not None:
        return f"{c.label}: {c.verdict or c.error}"
    drop = f", drop {c.drop:.2f}" if c.drop is not None else ""
    return f"{c.label} {_x(c.speedup)} FP32{drop}: {c.verdict}"


def from_profile(ratios: dict[str, float], saturates: bool | None, runtime: str) -> list[Candidate]:
    """Candidates for ``runtime`` from a device profile's per-format ratios (INT8 : FP32 speed,
    geometric mean over its layers); a device that saturates makes plain U8S8 unusable."""
    out = []
    for label in RUNTIME_FORMATS.get(runtime, ()):
        if label not in ratios:
            continue
        sat = bool(saturates) if label == "U8S8" else None
        out.append(Candidate(label, speedup=ratios[label], saturates=sat))
    return out
