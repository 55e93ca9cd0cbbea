"""Writing a run's report: report.json first (what --resume and `compressor check` read),
then report.md and report.html."""

from __future__ import annotations

from pathlib import Path

from compressor.report.model import Report
from compressor.utils.io import atomic_write_json, atomic_write_text
from compressor.utils.killpoints import checkpoint


def write_report(report: Report, run_dir: Path) -> None:
    from compressor.report.document import build_document
    from compressor.report.html import render_html
    from compressor.report.markdown import format_markdown

    atomic_write_json(run_dir / "report.json", report.to_json())
    checkpoint("report:json")
    document = build_document(report)  # what both files say
    atomic_write_text(run_dir / "report.md", format_markdown(report.recipe, document))
    atomic_write_text(run_dir / "report.html", render_html(report, run_dir, document))
