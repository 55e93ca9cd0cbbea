"""What each quantize step did, for report.md and report.html: techniques, nodes left in
FP32, the share of MACs in INT8, and the tuner's trials (with any error reasons)."""

from __future__ import annotations

from typing import Any

from compressor.report.model import Report

TRIAL_COLUMNS = ["trial", "label", "fp32 nodes", "metric", "drop", "passed", "latency_ms", "note"]
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
        fp32 = macs.get("fp32_compute_nodes")
        if fp32 is not None:
            shown = ", ".join(fp32[:12]) + (f", ... ({len(fp32) - 12} more)" if len(fp32) > 12 else "")
            lines.append(("compute nodes left FP32", f"{len(fp32)}" + (f": {shown}" if fp32 else "")))
        tuning = d.get("tuning") or {}
        if tuning.get("trials"):
            lines.append(("accuracy criterion", f"{tuning.get('metric')} drop <= {tuning.get('max_drop')} "
                          f"({tuning.get('mode')}): {'met' if tuning.get('passed') else 'NOT met'}"))
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


def _format_row(c: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str, suffix: str = "") -> str:
        return "-" if v is None else format(v, fmt) + suffix

    spread = f"{c['p10']:.2f}-{c['p90']:.2f}" if c.get("p10") is not None and c.get("p90") is not None else "-"
    return [str(c.get("label", "")), num(c.get("speedup"), ".2f", "x"), spread, num(c.get("metric"), ".4f"),
            num(c.get("drop"), ".2f"), str(c.get("verdict", ""))]


def _trial_row(t: dict[str, Any]) -> list[str]:
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return [str(t.get("trial", "")), str(t.get("label", "")), str(t.get("excluded_total", 0)),
            num(t.get("metric"), ".4f"), num(t.get("drop"), ".2f"),
            "yes" if t.get("passed") else "no", num(t.get("latency_ms"), ".3f"),
            f"error: {t['error']}" if t.get("error") else ""]
