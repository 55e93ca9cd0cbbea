"""report.md: the report's document (:mod:`compressor.report.document`) as Markdown."""

from __future__ import annotations

from compressor.report.document import Bullets, Note, Section, Table, Text, build_document
from compressor.report.model import Report

__all__ = ["format_markdown", "render_markdown"]


def _cell(v: str) -> str:
    return v.replace("|", "/")  # a bar would split the cell


def _note(n: str | Note) -> str:
    return f"**{n.label}**: {n.text}" if isinstance(n, Note) else n


def render_markdown(report: Report) -> str:
    return format_markdown(report.recipe, build_document(report))


def format_markdown(recipe: str, document: list[Section]) -> str:
    lines = [f"# compressor report: {recipe}", ""]
    for section in document:
        if section.plots:  # the plots are images: report.html has them
            continue
        if section.title is not None:
            lines += ["", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Note):
                lines += [_note(block), ""]
            elif isinstance(block, Bullets):
                lines += [f"- {_note(n)}" for n in block.items] + [""]
            elif isinstance(block, Table):
                lines += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
                lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows] + [""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(_squeeze(lines)) + "\n"


def _squeeze(lines: list[str]) -> list[str]:
    """No two blank lines in a row."""
    out: list[str] = []
    for ln in lines:
        if ln == "" and out and out[-1] == "":
            continue
        out.append(ln)
    return out
