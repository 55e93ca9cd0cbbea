"""`compressor check`: evaluate gates over a report; the verdict and its exit code.

Exit codes: 0 every gate holds, 1 a gate fails, 2 bad input (unreadable, invalid or
truncated report; a baseline of another recipe or schema version; a gate on a
value the report does not have). Each gate prints one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressor.errors import ReportError
from compressor.report.gates import GateLimits, evaluate_gates, step_gates
from compressor.report.model import GateResult, Report


def resolve_limits(report: Report, **cli_limits: float | None) -> GateLimits:
    """The recipe's gates recorded in the report, overridden by the command-line limits."""
    return GateLimits.from_mapping(report.gate_limits, **cli_limits)


@dataclass(frozen=True)
class CheckResult:
    """The verdict of ``compressor check``: every gate evaluated, and the exit code it means."""

    recipe: str
    gates: list[GateResult]

    @property
    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        """0 when every gate holds, 1 when one fails (bad input raised ReportError: exit 2)."""
        return 0 if self.passed else 1

    def lines(self) -> list[str]:
        """One line per gate, then ``N passed, M failed``."""
        return [format_gate(g) for g in self.gates] + [f"{len(self.gates) - len(self.failed)} passed, "
                                                       f"{len(self.failed)} failed"]


def check_report(report: Report, *, baseline: Report | None = None, source: str = "the report",
                 **limits: float | None) -> CheckResult:
    """Evaluate the gates: ``limits`` (the GateLimits fields; None: not given) override the
    recipe's gates recorded in ``report``; ``baseline`` is a previous report for the latency
    gate. Raises ReportError (exit 2) when there is nothing to gate."""
    resolved = resolve_limits(report, **limits)
    if resolved.any() or baseline is not None:
        gates = evaluate_gates(report, resolved, baseline) + step_gates(report)
    elif report.gates:
        gates = list(report.gates)  # an older report without gate_limits: its recorded verdicts
    else:
        raise ReportError(f"{source}: no gates to check",
                          hint="give limits such as --max-accuracy-drop 0.5, or put gates: in the recipe")
    if not gates:
        raise ReportError(f"{source}: the report has no results to gate")
    return CheckResult(report.recipe, gates)


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
