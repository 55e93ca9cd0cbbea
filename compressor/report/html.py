"""report.html: the report's document (:mod:`compressor.report.document`) as one
self-contained page (inline CSS, plots as base64 PNG, no network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from compressor.report.document import Bullets, Note, Section, Table, Text, build_document
from compressor.report.model import Report

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.fail { color: #b00; font-weight: bold; } .pass { color: #070; }
figure { margin: 1.5em 0; } figcaption { font-weight: bold; margin-bottom: 0.3em; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
"""


def _table(t: Table) -> str:
    h = "".join(f'<th class="{"l" if c in t.left else ""}">{html.escape(c)}</th>' for c in t.header)
    body = []
    for row in t.rows:
        cells = []
        for c, v in zip(t.header, row):
            cls = "l" if c in t.left else ""
            if v.startswith("FAIL"):
                cls += " fail"
            cells.append(f'<td class="{cls.strip()}">{html.escape(v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _note(n: str | Note) -> str:
    return f"<b>{html.escape(n.label)}</b>: {html.escape(n.text)}" if isinstance(n, Note) else html.escape(n)


def _plots(report: Report, base_dir: Path | None) -> list[str]:
    try:
        from compressor.report.plots import render_plots

        plots = render_plots(report, base_dir)
    except ImportError:
        return ["<p class='note'>matplotlib is not installed: no plots (pip install matplotlib).</p>"]
    return [f"<figure><figcaption>{html.escape(title)}</figcaption>"
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            "</figure>" for title, png in plots.items()]


def _section(section: Section, plots: list[str]) -> list[str]:
    parts = [] if section.title is None else [f"<h2>{html.escape(section.title)}</h2>"]
    for block in section.blocks:
        if isinstance(block, Text):
            parts.append(f"<p class='note'>{html.escape(block.text)}</p>" if block.quiet
                         else f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Note):
            parts.append(f"<p>{_note(block)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_note(n)}</li>" for n in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
    if section.plots:
        parts += plots
    return parts


def render_html(report: Report, base_dir: Path | None = None, document: list[Section] | None = None) -> str:
    """The report as one HTML page; ``base_dir`` is where ``latency_samples`` paths are found;
    ``document``: the report's document (:func:`build_document`) when the caller built it already."""
    return format_html(report.recipe, document or build_document(report), _plots(report, base_dir))


def format_html(recipe: str, document: list[Section], plots: list[str]) -> str:
    """The page: ``plots`` (HTML figures) go where the document's plots section is."""
    parts = [f"<h1>compressor report: {html.escape(recipe)}</h1>"]
    for section in document:
        parts += _section(section, plots)
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>compressor report: {html.escape(recipe)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
