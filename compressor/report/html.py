"""report.html: one self-contained file (inline CSS, plots as base64 PNG, no network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from compressor.report.markdown import COLUMNS, summary_rows
from compressor.report.model import Report
from compressor.report.quantization import FORMAT_COLUMNS, TRIAL_COLUMNS, quantize_summaries
from compressor.utils.io import atomic_write_text

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.fail { color: #b00; font-weight: bold; } .pass { color: #070; }
figure { margin: 1.5em 0; } figcaption { font-weight: bold; margin-bottom: 0.3em; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
"""

_LEFT = {"variant", "target", "precision", "metric", "parity", "status"}


def _table(header: list[str], rows: list[list[str]], left: set[str] = _LEFT) -> str:
    h = "".join(f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>' for c in header)
    body = []
    for row in rows:
        cells = []
        for c, v in zip(header, row):
            cls = "l" if c in left else ""
            if v.startswith("FAIL") or v == "FAIL":
                cls += " fail"
            cells.append(f'<td class="{cls.strip()}">{html.escape(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: Report, base_dir: Path | None = None) -> str:
    """The report as one HTML page; ``base_dir`` is where ``latency_samples`` paths are found."""
    parts = [f"<h1>compressor report: {html.escape(report.recipe)}</h1>"]
    env = report.environment
    if report.created:
        parts.append(f"<p>Created {html.escape(report.created)}.</p>")
    if env:
        runtimes = ", ".join(f"{k} {v}" for k, v in env.get("runtimes", {}).items())
        parts.append(f"<p>Machine: {html.escape(str(env.get('cpu', '?')))} on {html.escape(str(env.get('host', '?')))}, "
                     f"{html.escape(str(env.get('threads', '?')))} threads; runtimes: {html.escape(runtimes)}.</p>")
    parts.append("<h2>Results</h2><p class='note'>Speedup and compression are against the baseline on the same "
                 "target; drop is in percentage points (percent worse for lower-is-better metrics such as mse); "
                 "pareto marks results no other result beats on both p50 latency and accuracy.</p>")
    rows = summary_rows(report)
    parts.append(_table(COLUMNS, [[row.get(c, "") for c in COLUMNS] for row in rows]))
    from compressor.report.llm_table import LLM_COLUMNS, LLM_NOTE, has_llm, llm_notes, llm_rows

    if has_llm(report):
        parts.append(f"<h2>Decoder LLM</h2><p class='note'>{html.escape(LLM_NOTE)}</p>")
        parts += [f"<p><b>Baseline weights: {html.escape(n)}</b> (not an original FP32 checkpoint).</p>"
                  for n in llm_notes(report)]
        parts.append(_table(LLM_COLUMNS, [[row.get(c, "") for c in LLM_COLUMNS] for row in llm_rows(report)]))
    if report.gates:
        parts.append("<h2>Gates</h2>")
        parts.append(_table(["gate", "limit", "measured", "result", "detail"],
                            [[g.name, f"{g.limit:g}", "-" if g.value is None else f"{g.value:g}",
                              "pass" if g.passed else "FAIL", g.detail] for g in report.gates],
                            left={"gate", "result", "detail"}))
    parts.append("<h2>Plots</h2>")
    try:
        from compressor.report.plots import render_plots

        plots = render_plots(report, base_dir)
    except ImportError:
        plots = {}
        parts.append("<p class='note'>matplotlib is not installed: no plots (pip install matplotlib).</p>")
    for title, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><figcaption>{html.escape(title)}</figcaption>"
                     f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}"></figure>')
    if report.steps:
        parts.append("<h2>Steps</h2>")
        parts.append(_table(["step", "kind", "seconds"], [[str(s.get("name", "")), str(s.get("kind", "")),
                                                           f"{s.get('seconds', 0) or 0:.1f}"] for s in report.steps],
                            left={"step", "kind"}))
    for q in quantize_summaries(report):
        parts.append(f"<h2>Quantization: {html.escape(q['name'])}</h2><ul>"
                     + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in q["lines"]) + "</ul>")
        if q["formats"]:
            parts.append(_table(FORMAT_COLUMNS, q["formats"], left={"format", "verdict"}))
        if q["trials"]:
            parts.append(_table(TRIAL_COLUMNS, q["trials"], left={"label", "note"}))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>compressor report: {html.escape(report.recipe)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def write_html(report: Report, path: Path, base_dir: Path | None = None) -> Path:
    return atomic_write_text(path, render_html(report, base_dir if base_dir is not None else path.parent))
