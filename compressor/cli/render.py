"""Terminal rendering of reports (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from compressor.report.markdown import summary_rows
from compressor.report.model import Report

TERMINAL_COLUMNS = ["variant", "target", "precision", "accuracy", "drop", "p50_ms", "p99_ms", "speedup", "size",
                    "parity"]


def print_summary(report: Report, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # CI logs: do not squeeze the table into 80 columns
            console = Console(width=200)
    table = Table(title=f"compressor: {report.recipe}", title_justify="left")
    for c in TERMINAL_COLUMNS:
        table.add_column(c, justify="right" if c not in ("variant", "target", "precision", "parity") else "left")
    for row in summary_rows(report):
        if row.get("status", "ok") != "ok":
            table.add_row(row["variant"], row["target"], row["precision"], f"[red]{row['status']}[/]",
                          *[""] * (len(TERMINAL_COLUMNS) - 4))
        else:
            table.add_row(*[row.get(c, "") for c in TERMINAL_COLUMNS])
    # keep the parity column short in the terminal: pass/fail and top-1 agreement
    console.print(table)
    for g in report.gates:
        mark = "[green]pass[/]" if g.passed else "[red]FAIL[/]"
        value = "-" if g.value is None else f"{g.value:g}"
        console.print(f"gate {g.name}: limit {g.limit:g}, measured {value} -> {mark}  {g.detail}", highlight=False)
