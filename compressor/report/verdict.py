"""Whether INT8 paid in a run, from what the run measured, in one line; and where it did not,
the lever that did (a smaller FP32 model, another runtime) or, when the run measured none, the
one to try. Never a table's promise: only the run's own latencies.

    >>> v = int8_verdict(report)                 # doctest: +SKIP
    >>> v["line"]                                # doctest: +SKIP
    'INT8 does not pay here: the fastest INT8 result, compressed@onnxruntime-cpu, ran 0.80x FP32 ...'
"""

from __future__ import annotations

from typing import Any

from compressor.report.model import Report, Result
from compressor.utils.int8_formats import PAYS_AT

BASELINE = "baseline"


def _ms(r: Result) -> float | None:
    return r.latency_ms.p50 if r.latency_ms is not None else None


def _speedup(r: Result, ref: Result) -> float | None:
    """``r``'s speedup over ``ref``: the paired (interleaved) figure when ``ref`` is the baseline
    on the same target, else the ratio of the two runs' medians."""
    if r.paired is not None and r.target == ref.target and ref.variant == BASELINE:
        return r.paired.speedup
    a, b = _ms(ref), _ms(r)
    return a / b if a and b else None


def int8_verdict(report: Report) -> dict[str, Any] | None:
    """``{"pays", "line", "fastest", "best_int8", "levers"}`` for a run with INT8 results (None
    without any). INT8 is compared with the fastest FP32 run of the same model (the baseline
    on any target): beating a slow runtime's FP32 is not a reason to ship INT8."""
    ok = [r for r in report.results if r.status == "ok" and _ms(r) is not None and r.llm is None]
    int8 = [r for r in ok if r.precision == "int8"]
    fp32 = [r for r in ok if r.variant == BASELINE]
    if not int8 or not fp32:
        return None
    ref = min(fp32, key=lambda r: _ms(r) or float("inf"))
    best = max(int8, key=lambda r: _speedup(r, ref) or 0.0)
    gain = _speedup(best, ref) or 0.0
    fastest = min(ok, key=lambda r: _ms(r) or float("inf"))
    name = f"{fastest.variant} ({fastest.precision}) on {fastest.target}, {_ms(fastest):.3f} ms"
    ref_name = f"FP32 on {ref.target}"
    levers = _levers(ok, ref, fp32[0])
    if gain >= PAYS_AT:
        line = f"INT8 pays here: {best.variant}@{best.target} ran {gain:.2f}x {ref_name} (the fastest FP32 run)"
    else:
        line = (f"INT8 does not pay here: the fastest INT8 result, {best.variant}@{best.target}, ran {gain:.2f}x "
                f"{ref_name}; fastest measured: {name}. " + (f"What pays here: {'; '.join(levers)}" if levers else
                "Nothing measured in this run beats FP32: try fewer MACs (structured pruning + distillation, "
                "docs/pruning.md) or another runtime target"))
    return {"pays": gain >= PAYS_AT, "line": line, "fastest": name, "against": ref_name,
            "best_int8": {"variant": best.variant, "target": best.target, "speedup": round(gain, 3)},
            "levers": levers}


def _levers(ok: list[Result], ref: Result, first: Result) -> list[str]:
    """What the run measured faster without INT8: the runtime (the fastest FP32 baseline against
    the first target's) and a smaller FP32 model (the recipe's torch-domain steps' result)."""
    out = []
    s = _speedup(ref, first) if ref is not first else None
    if s is not None and s >= PAYS_AT:
        out.append(f"the runtime: FP32 on {ref.target} ran {s:.2f}x FP32 on {first.target}")
    for r in ok:
        if r.precision == "int8" or r.variant == BASELINE:
            continue
        s = _speedup(r, ref)
        if s is not None and s >= PAYS_AT:
            out.append(f"fewer MACs: the recipe's {r.variant} model (FP32) on {r.target} ran {s:.2f}x FP32 on "
                       f"{ref.target}")
    return out
