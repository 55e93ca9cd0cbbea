"""`compressor check`: evaluate gates over a report and return the exit code.

Exit codes: 0 every gate holds, 1 a gate fails, 2 bad input (unreadable, invalid or
truncated report; a baseline of another recipe or schema version; a gate on a
value the report does not have). Each gate prints one line.
"""

from __future__ import annotations

from pathlib import Path

import click

from compressor.errors import ReportError
from compressor.report.gates import LIMIT_GATES, GateLimits, evaluate_gates
from compressor.report.model import GateResult, Report, load_report


def resolve_limits(report: Report, **cli_limits: float | None) -> GateLimits:
    """The recipe's gates recorded in the report, overridden by the command-line limits."""
    return GateLimits.from_mapping(report.gate_limits, **cli_limits)


def run_check(report_path: Path, *, baseline: Path | None = None, max_accuracy_drop: float | None = None,
              min_speedup: float | None = None, max_latency_increase: float | None = None,
              max_size_bytes: int | None = None, latency_tolerance: float | None = None,
              latency_floor: float | None = None, junit: Path | None = None,
              max_perplexity_increase_pct: float | None = None, min_decode_tokens_per_s: float | None = None) -> int:
    """Evaluate the gates, print one line per gate, write JUnit XML; return 0 or 1 (ReportError: 2)."""
    report = load_report(report_path)
    previous = load_report(baseline) if baseline else None
    limits = resolve_limits(report, max_accuracy_drop=max_accuracy_drop, min_speedup=min_speedup,
                            max_latency_increase=max_latency_increase, max_size_bytes=max_size_bytes,
                            latency_tolerance=latency_tolerance, latency_floor=latency_floor,
                            max_perplexity_increase_pct=max_perplexity_increase_pct,
                            min_decode_tokens_per_s=min_decode_tokens_per_s)
    if limits.any() or previous is not None:
        gates = evaluate_gates(report, limits, previous)
        gates += [g for g in report.gates if g.name not in LIMIT_GATES]
    elif report.gates:
        gates = list(report.gates)  # an older report without gate_limits: its recorded verdicts
    else:
        raise ReportError(f"{report_path}: no gates to check",
                          hint="give limits such as --max-accuracy-drop 0.5, or put gates: in the recipe")
    if not gates:
        raise ReportError(f"{report_path}: the report has no results to gate")
    for g in gates:
        click.echo(format_gate(g))
    if junit:
        write_junit(gates, junit, report.recipe)
    failed = sum(not g.passed for g in gates)
    click.echo(f"{len(gates) - failed} passed, {failed} failed")
    return 1 if failed else 0


def format_gate(g: GateResult) -> str:
    value = "-" if g.value is None else f"{g.value:g}"
    return f"{'PASS' if g.passed else 'FAIL'} {g.name}: limit {g.limit:g}, measured {value}  ({g.detail})"


def write_junit(gates: list[GateResult], path: Path, suite: str) -> None:
    """JUnit XML: one testsuite, one testcase per gate, a <failure> for each failed gate."""
    import xml.etree.ElementTree as ET

    from compressor.utils.io import atomic_write_bytes

    root = ET.Element("testsuites", name="compressor check", tests=str(len(gates)),
                      failures=str(sum(not g.passed for g in gates)))
    ts = ET.SubElement(root, "testsuite", name=f"compressor.{suite}", tests=str(len(gates)),
                       failures=str(sum(not g.passed for g in gates)), errors="0", skipped="0")
    for g in gates:
        case = ET.SubElement(ts, "testcase", classname=f"compressor.{g.name}", name=g.detail or g.name)
        value = "-" if g.value is None else f"{g.value:g}"
        if not g.passed:
            failure = ET.SubElement(case, "failure", message=f"{g.name}: measured {value}, limit {g.limit:g}",
                                    type="GateFailed")
            failure.text = format_gate(g)
        else:
            ET.SubElement(case, "system-out").text = format_gate(g)
    ET.indent(root)
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
