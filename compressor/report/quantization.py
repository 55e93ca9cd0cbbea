"""What each quantize step did, for report.md and report.html: techniques, nodes left in
FP32, the share of MACs in INT8, and the tuner's trials (with any error reasons)."""

from __future__ import annotations

from typing import Any

from compressor.report.model import Report

TRIAL_COLUMNS = ["trial", "label", "fp32 nodes", "metric", "drop", "passed", "latency_ms", "vs FP32", "KL", "note"]
FORMAT_COLUMNS = ["format", "speed vs FP32", "p10-p90", "metric", "drop", "verdict"]
SOURCES = {"measured": "measured on this host", "profile": "ranked by a measured device profile",
           "table": "the device table (unmeasured)", "pinned": "set by the recipe or the target file"}


def quantize_summaries(report: Report) -> list[dict[str, Any]]:
    """One entry per quantize step: ``name``, ``lines`` (label, text) and ``trials`` (rows)."""
    out = []
    for s in report.steps:
        if s.get("kind") != "quantize":
            continue
        d = s.get("details") or {}
        macs = d.get("macs") or {}
        lines = [("techniques", "; ".join(d.get("techniques") or []) or "-")]
        if "int8_mac_share" in macs:
            total = macs["macs"]
            count = f"{total / 1e6:.1f} M" if total >= 1e6 else f"{total:,}"
            lines.append(("MACs in INT8", f"{macs['int8_mac_share'] * 100:.1f}% of {count} "
                          "(per sample; Conv/MatMul/Gemm)"))
        if d.get("mostly_fp32"):
            lines.append(("note", d["mostly_fp32"]))
        fp32 = macs.get("fp32_compute_nodes")
        if fp32 is not None:
            shown = ", ".join(fp32[:12]) + (f", ... ({len(fp32) - 12} more)" if len(fp32) > 12 else "")
            lines.append(("compute nodes left FP32", f"{len(fp32)}" + (f": {shown}" if fp32 else "")))
        tuning = d.get("tuning") or {}
        if tuning.get("trials"):
            lines.append(("accuracy criterion", f"{tuning.get('metric')} drop <= {tuning.get('max_drop')} "
                          f"({tuning.get('mode')}): {'met' if tuning.get('passed') else 'NOT met'}"))
            lines += _judge_lines(tuning)
        for name, bought in (d.get("technique_effects") or {}).items():
            lines.append((f"effect of {name}", str(bought)))
        fmt = d.get("format_choice") or {}
        if fmt:
            how = SOURCES.get(fmt.get("source", ""), fmt.get("source", "?"))
            when = f" ({fmt['measured_on']})" if fmt.get("measured_on") else ""
            cached = "; reused from an earlier measurement" if fmt.get("cached") else ""
            lines.insert(0, ("INT8 format", f"{fmt.get('chosen') or '-'}, {how}{when}{cached}: {fmt.get('line', '')}"))
        out.append({"name": s.get("name", ""), "lines": lines, "trials": [_trial_row(t) for t in tuning.get("trials", [])],
                    "formats": [_format_row(c) for c in fmt.get("candidates", [])]})
    return out


def _judge_lines(tuning: dict[str, Any]) -> list[tuple[str, str]]:
    """How trials were judged, FP32's own noise floor beside the agreement figures, and the
    tuning budget (all optional: reports from before these fields have none)."""
    out = []
    if tuning.get("judged_by"):
        out.append(("trials judged by", str(tuning["judged_by"])))
    nf = tuning.get("noise_floor") or {}
    if nf:
        stable = f"; FP32 top-1 stable on {nf['stable_samples']} of {nf['samples']} samples" \
            if "stable_samples" in nf else ""
        out.append(("FP32 noise floor", f"{nf['metric']} {nf['value']:.4f} of FP32 with itself under "
                    f"{nf['perturbation']}{stable}: agreement figures below it are noise, not INT8 error"))
    if tuning.get("time_budget_s"):
        used = f"{tuning.get('seconds', 0):.0f} s of a {tuning['time_budget_s']:.0f} s budget"
        out.append(("tuning time", used + (f"; FP32 {tuning['fp32_latency_ms']:.3f} ms batch-1"
                                           if tuning.get("fp32_latency_ms") else "")))
    return out


def _format_row(c: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str, suffix: str = "") -> str:
        return "-" if v is None else format(v, fmt) + suffix

    spread = f"{c['p10']:.2f}-{c['p90']:.2f}" if c.get("p10") is not None and c.get("p90") is not None else "-"
    return [str(c.get("label", "")), num(c.get("speedup"), ".2f", "x"), spread, num(c.get("metric"), ".4f"),
            num(c.get("drop"), ".2f"), str(c.get("verdict", ""))]


def _trial_row(t: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    metric = num(t.get("metric"), ".4f") + (f" (all {t['metric_all']:.4f})" if "metric_all" in t else "")
    speed = num(t.get("latency_vs_fp32"), ".2f") + ("x" if t.get("latency_vs_fp32") is not None else "")
    return [str(t.get("trial", "")), str(t.get("label", "")), str(t.get("excluded_total", 0)),
            metric, num(t.get("drop"), ".2f"),
            "yes" if t.get("passed") else "no", num(t.get("latency_ms"), ".3f"), speed, num(t.get("kl"), ".4f"),
            f"error: {t['error']}" if t.get("error") else ""]
