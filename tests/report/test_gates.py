"""Gates pass and fail as they should, noise tolerance included; `compressor check` exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from compressor.errors import ReportError
from compressor.report.gates import GateLimits, evaluate_gates, latency_allowance
from tests.report.conftest import make_report, make_result, write_report


def _one(report, **limits):
    gates = evaluate_gates(report, GateLimits(**{k: v for k, v in limits.items() if k != "previous"}),
                           limits.get("previous"))
    assert len(gates) == 1
    return gates[0]


def test_accuracy_drop_in_percentage_points():
    rep = make_report(base_acc=0.90, comp_acc=0.895)  # 0.5 pp
    assert _one(rep, max_accuracy_drop=0.6).passed
    g = _one(rep, max_accuracy_drop=0.4)
    assert not g.passed and g.value == pytest.approx(0.5)


def test_lower_is_better_metric_drop_is_percent_worse():
    rep = make_report(base_acc=0.010, comp_acc=0.011, metric="mse")  # mse 10 % worse
    g = _one(rep, max_accuracy_drop=5)
    assert not g.passed and g.value == pytest.approx(10.0)
    better = make_report(base_acc=0.010, comp_acc=0.009, metric="mse")  # improved: negative drop
    assert _one(better, max_accuracy_drop=0).passed


def test_min_speedup_and_size():
    rep = make_report(base_p50=2.0, comp_p50=1.0)
    assert _one(rep, min_speedup=1.9).passed
    assert not _one(rep, min_speedup=2.5).passed
    assert _one(rep, max_size_bytes=1000).passed
    assert not _one(rep, max_size_bytes=999).passed


def test_latency_increase_noise_allowance():
    old = make_report(comp_p50=1.00, rse=0.005)
    # within the 5 % floor: an unchanged model measured again
    assert _one(make_report(comp_p50=1.04, rse=0.005), max_latency_increase=0, previous=old).passed
    # a real 12 % regression with a tight spread fails
    g = _one(make_report(comp_p50=1.12, rse=0.005), max_latency_increase=0, previous=old)
    assert not g.passed and g.value == pytest.approx(12.0)
    # the same 12 % on very noisy runs (3 % p50 standard error each) is within 3 x combined SE = 12.7 %
    noisy_old = make_report(comp_p50=1.00, rse=0.03)
    assert _one(make_report(comp_p50=1.12, rse=0.03), max_latency_increase=0, previous=noisy_old).passed
    # the tolerance is adjustable: k = 1 makes it fail
    assert not _one(make_report(comp_p50=1.12, rse=0.03), max_latency_increase=0, previous=noisy_old,
                    latency_tolerance=1.0).passed


def test_allowance_formula():
    a, b = make_result("compressed", rse=0.03), make_result("compressed", rse=0.04)
    assert latency_allowance(a, b, 3.0, 5.0) == pytest.approx(15.0)  # 3 * 100 * hypot(0.03, 0.04)
    assert latency_allowance(a, b, 3.0, 20.0) == pytest.approx(20.0)  # the floor wins


def test_missing_values_raise_report_error():
    no_acc = make_report()
    no_acc.results[1].accuracy = None
    with pytest.raises(ReportError, match="max_accuracy_drop needs accuracy"):
        evaluate_gates(no_acc, GateLimits(max_accuracy_drop=1))
    with pytest.raises(ReportError, match="--baseline"):
        evaluate_gates(make_report(), GateLimits(max_latency_increase=5))
    with pytest.raises(ReportError, match="recipe"):
        evaluate_gates(make_report(), GateLimits(max_latency_increase=5), make_report(recipe="other"))


def test_failed_target_fails_a_gate():
    rep = make_report()
    rep.results.append(make_result("compressed", "openvino-cpu").model_copy(update={"status": "failed",
                                                                                    "error": "boom"}))
    gates = evaluate_gates(rep, GateLimits(max_accuracy_drop=1))
    assert [g.name for g in gates if not g.passed] == ["target_ok"]


# ------------------------------------------------------------------ `compressor check`


def test_check_exit_codes_lines_and_junit(tmp_path, cli_runner):
    path = write_report(make_report(), tmp_path)
    junit = tmp_path / "junit.xml"
    res = cli_runner("check", path, "--max-accuracy-drop", "1", "--min-speedup", "1.5", "--max-size-bytes", "2000",
                     "--junit", junit)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert len(lines) == 3 and all("limit" in ln and "measured" in ln for ln in lines)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and len(suite.findall("testcase")) == 3 and suite.get("failures") == "0"

    res = cli_runner("check", path, "--max-accuracy-drop", "0.1", "--min-speedup", "1.5", "--junit", junit)
    assert res.exit_code == 1
    assert "FAIL max_accuracy_drop: limit 0.1, measured 0.5" in res.output
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 2 and suite.get("failures") == "1"
    assert sum(c.find("failure") is not None for c in cases) == 1


def test_check_uses_recipe_gates_and_cli_overrides(tmp_path, cli_runner):
    path = write_report(make_report(gate_limits={"max_accuracy_drop": 0.1}), tmp_path)
    res = cli_runner("check", path)
    assert res.exit_code == 1 and "FAIL max_accuracy_drop: limit 0.1" in res.output
    res = cli_runner("check", path, "--max-accuracy-drop", "1")
    assert res.exit_code == 0 and "PASS max_accuracy_drop: limit 1" in res.output


def test_check_latency_against_baseline(tmp_path, cli_runner):
    old = write_report(make_report(comp_p50=1.0), tmp_path / "old")
    same = write_report(make_report(comp_p50=1.03), tmp_path / "same")
    slow = write_report(make_report(comp_p50=1.3), tmp_path / "slow")
    assert cli_runner("check", same, "--baseline", old, "--max-latency-increase", "0").exit_code == 0
    res = cli_runner("check", slow, "--baseline", old, "--max-latency-increase", "10")
    assert res.exit_code == 1 and "noise allowance 5.0%" in res.output


@pytest.mark.parametrize("case", ["truncated", "not_json_object", "schema_version", "invalid", "missing",
                                  "other_recipe", "no_accuracy", "no_gates", "latency_without_baseline",
                                  "baseline_schema"])
def test_check_bad_input_exits_2_with_one_line(tmp_path, cli_runner, case):
    good = write_report(make_report(), tmp_path / "good")
    bad = tmp_path / "bad.json"
    args = ["--max-accuracy-drop", "1"]
    text = good.read_text()
    if case == "truncated":
        bad.write_text(text[: len(text) // 2])
    elif case == "not_json_object":
        bad.write_text("[1, 2]")
    elif case == "schema_version":
        bad.write_text(text.replace('"schema_version": 1', '"schema_version": 2'))
    elif case == "invalid":
        data = json.loads(text)
        data["results"][0]["latency_ms"]["p50"] = "fast"
        bad.write_text(json.dumps(data))
    elif case == "other_recipe":
        bad, args = good, ["--baseline", write_report(make_report(recipe="other"), tmp_path / "o"),
                           "--max-latency-increase", "5"]
    elif case == "baseline_schema":
        bad.write_text(text.replace('"schema_version": 1', '"schema_version": 0'))
        bad, args = good, ["--baseline", bad, "--max-latency-increase", "5"]
    elif case == "no_accuracy":
        rep = make_report()
        rep.results[1].accuracy = None
        bad = write_report(rep, tmp_path / "na")
    elif case == "no_gates":
        bad, args = good, []
    elif case == "latency_without_baseline":
        bad, args = good, ["--max-latency-increase", "5"]
    res = cli_runner("check", bad, *args)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("Error: "), res.output


def test_check_keeps_gates_recorded_by_steps(tmp_path, cli_runner):
    from compressor.report.model import GateResult

    report = make_report(gate_limits={"max_accuracy_drop": 1.0})
    report.gates = [GateResult(name="01-quantize.accuracy_criterion", limit=0.5, value=0.8, passed=False,
                               detail="kept the best trial")]
    path = write_report(report, tmp_path)
    res = cli_runner("check", path)
    assert res.exit_code == 1
    assert "PASS max_accuracy_drop" in res.output
    assert "FAIL 01-quantize.accuracy_criterion: limit 0.5, measured 0.8" in res.output


def test_gate_names_have_one_source():
    # the recipe's `gates:` keys are the gate names; GateLimits and `compressor check` follow them
    from dataclasses import fields

    import click

    from compressor.cli.main import _register, cli
    from compressor.recipe.schema import GateSpec
    from compressor.report.gates import GATE_NAMES, LIMIT_GATES, GateLimits

    assert GATE_NAMES == tuple(GateSpec.model_fields)
    assert set(GATE_NAMES) <= {f.name for f in fields(GateLimits)} and set(GATE_NAMES) < LIMIT_GATES
    _register()
    options = {p.name for p in cli.commands["check"].params if isinstance(p, click.Option)}
    assert set(GATE_NAMES) <= options, set(GATE_NAMES) - options


def test_record_gates_records_every_limit_and_evaluates_what_one_run_can():
    """What run and sweep do: every recipe gate recorded for `check`; the latency-increase gate
    (it needs a previous report) left to `check --baseline`; a step's own gates carried after."""
    from compressor.report.gates import record_gates
    from compressor.report.model import GateResult

    rep = make_report(base_acc=0.90, comp_acc=0.895)
    step_gate = GateResult(name="00-quantize.accuracy_criterion", limit=0.5, value=0.7, passed=False, detail="kept")
    record_gates(rep, {"max_accuracy_drop": 0.6, "max_latency_increase": 10, "min_speedup": None}, [step_gate])
    assert rep.gate_limits == {"max_accuracy_drop": 0.6, "max_latency_increase": 10}
    assert [g.name for g in rep.gates] == ["max_accuracy_drop", "00-quantize.accuracy_criterion"]
    assert rep.gates[0].passed and rep.gates[0].value == pytest.approx(0.5)
    record_gates(rep, {})
    assert rep.gate_limits is None and rep.gates == []
