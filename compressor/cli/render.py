"""Terminal rendering of reports (rich tables), readable in 120 columns."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from compressor.report.document import device_notes, summary_rows
from compressor.report.model import Report

# (row key, header, justify): short headers so the table fits 120 columns
TERMINAL_COLUMNS = [("variant", "variant", "left"), ("target", "target", "left"), ("precision", "prec", "left"),
                    ("accuracy", "accuracy", "right"), ("drop", "drop", "right"), ("p50_ms", "p50 ms", "right"),
                    ("p99_ms", "p99 ms", "right"), ("speedup", "speedup", "right"), ("size", "size", "right"),
                    ("compression", "ratio", "right"), ("parity", "parity", "left")]


def console_for_output() -> Console:
    """A console for stdout; in CI logs (no terminal) 120 columns rather than rich's 80."""
    console = Console()
    return console if console.is_terminal else Console(width=120)


def summary_table(report: Report) -> Table:
    table = Table(title=f"compressor: {report.recipe}", title_justify="left", box=box.SIMPLE_HEAD,
                  caption="speedup and ratio (size) vs the baseline on the same target (\\[p10-p90]: paired, "
                          "interleaved rounds); parity: top-1 agreement with FP32", caption_justify="left")
    rows = summary_rows(report)
    for key, header, justify in TERMINAL_COLUMNS:
        # names stay whole (they are what users grep for); a very long one may still fold
        widest = max((len(str(r.get(key, ""))) for r in rows), default=0) if key in ("variant", "target") else None
        table.add_column(header, justify=justify, no_wrap=key not in ("variant", "target"),  # type: ignore[arg-type]
                         overflow="fold", min_width=min(widest, 24) if widest else None)
    for row in rows:
        if row.get("status", "ok") != "ok":
            table.add_row(row["variant"], row["target"], row["precision"], "[red]FAILED[/]",
                          *[""] * (len(TERMINAL_COLUMNS) - 4))
            continue
        cells = [row.get(key, "") for key, _, _ in TERMINAL_COLUMNS]
        if row.get("pareto"):
            cells[0] = f"[bold]{cells[0]}[/]"
        if cells[-1].startswith("FAIL"):
            cells[-1] = f"[red]{cells[-1]}[/]"
        table.add_row(*cells)
    return table


def print_summary(report: Report, console: Console | None = None) -> None:
    """The summary table, then failed targets and gates, one line each."""
    console = console or console_for_output()
    console.print(summary_table(report))
    for note in device_notes(report):
        console.print(Text(note, style="yellow" if note.startswith("warning") else ""), highlight=False)
    for r in report.results:
        if r.status == "failed":
            console.print(f"[red]failed[/] {r.variant}@{r.target}: {r.error}", highlight=False)
    for g in report.gates:
        mark = "[green]PASS[/]" if g.passed else "[red]FAIL[/]"
        value = "-" if g.value is None else f"{g.value:g}"
        console.print(f"{mark} {g.name}: limit {g.limit:g}, measured {value}  ({g.detail})", highlight=False)
