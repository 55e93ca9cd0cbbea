"""`compressor check`: evaluate gates over a report and return the exit code."""

from __future__ import annotations

from pathlib import Path

import click

from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import GateResult, load_report


def run_check(report_path: Path, *, baseline: Path | None = None, max_accuracy_drop: float | None = None,
              min_speedup: float | None = None, max_latency_increase: float | None = None,
              max_size_bytes: int | None = None, latency_tolerance: float = 3.0, junit: Path | None = None) -> int:
    report = load_report(report_path)
    previous = load_report(baseline) if baseline else None
    limits = GateLimits(max_accuracy_drop, min_speedup, max_latency_increase, max_size_bytes, latency_tolerance)
    if limits.any():
        gates = evaluate_gates(report, limits, previous)
    else:
        # no limits given: re-check the recipe's gates recorded in the report
        gates = list(report.gates)
        if not gates:
            raise click.UsageError("no gates: give limits such as --max-accuracy-drop, or put gates: in the recipe")
    if previous is not None and previous.recipe != report.recipe:
        from compressor.errors import ReportError

        raise ReportError(f"--baseline is a report of recipe {previous.recipe!r}, not {report.recipe!r}")
    for g in gates:
        value = "-" if g.value is None else f"{g.value:g}"
        status = "PASS" if g.passed else "FAIL"
        click.echo(f"{status} {g.name}: limit {g.limit:g}, measured {value} ({g.detail})")
    if junit:
        write_junit(gates, junit, report.recipe)
    failed = sum(not g.passed for g in gates)
    click.echo(f"{len(gates) - failed} passed, {failed} failed")
    return 1 if failed else 0


def write_junit(gates: list[GateResult], path: Path, suite: str) -> None:
    import xml.etree.ElementTree as ET

    from compressor.utils.io import atomic_write_bytes

    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=f"compressor.{suite}", tests=str(len(gates)),
                       failures=str(sum(not g.passed for g in gates)))
    for g in gates:
        case = ET.SubElement(ts, "testcase", classname=f"compressor.{suite}", name=f"{g.name} {g.detail}".strip())
        if not g.passed:
            failure = ET.SubElement(case, "failure", message=f"{g.name}: measured {g.value} vs limit {g.limit}")
            failure.text = g.detail
    atomic_write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True))
