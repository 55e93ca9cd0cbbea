"""Accuracy-aware INT8 on a model with one quantization-hostile tensor, and each engine."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tests.accuracy_fixtures import write_recipe
from compressor.cli.main import _register, cli

_register()


def _run(recipe, out):
    return CliRunner().invoke(cli, ["run", str(recipe), "--out", str(out)])


def _quant_step(report):
    return next(s for s in report["steps"] if s["kind"] == "quantize")


def _acc(report, variant):
    return next(r for r in report["results"] if r["variant"] == variant)["accuracy"]["value"]


def test_plain_ptq_breaks_and_tuner_finds_the_fallback(hostile_dir, tmp_path):
    plain = _run(write_recipe(hostile_dir, "{mode: static}", name="plain"), tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    rp = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert (_acc(rp, "baseline") - _acc(rp, "compressed")) * 100 > 20  # plain PTQ collapses

    tuned = _run(write_recipe(hostile_dir, "{accuracy_criterion: {max_drop: 1.0}}", name="tuned"), tmp_path / "t")
    assert tuned.exit_code == 0, tuned.output
    rt = json.loads((tmp_path / "t" / "report.json").read_text())
    tuning = _quant_step(rt)["details"]["tuning"]
    assert tuning["passed"] is True
    assert tuning["trials"][0]["drop"] > 20 and tuning["trials"][-1]["passed"]
    assert all(t["latency_ms"] > 0 for t in tuning["trials"])
    # the hostile tensor is produced by 'mid' and read by 'head': both must fall back, fc0 need not
    fell = tuning["fallback_nodes"]
    assert len(fell) == 2 and "node_linear" not in fell, fell
    assert (_acc(rt, "baseline") - _acc(rt, "compressed")) * 100 <= 1.0 + 1e-9
    # the sensitivity analysis is cached: a second run reuses it
    again = _run(write_recipe(hostile_dir, "{accuracy_criterion: {max_drop: 1.0}}", name="tuned"), tmp_path / "t2")
    assert again.exit_code == 0
    assert list((tmp_path / "cache" / "accuracy_aware").glob("*.json"))


def test_unmeetable_criterion_fails_with_history(hostile_dir, tmp_path):
    # fewer trials than needed: only one fallback trial can run after the default one
    q = "{accuracy_criterion: {max_drop: 1.0, max_trials: 2, tune_calibration: false}}"
    res = _run(write_recipe(hostile_dir, q, name="never"), tmp_path / "never")
    assert res.exit_code == 1
    assert "accuracy criterion not met" in res.output and "#1" in res.output and "#2" in res.output
    history = json.loads((tmp_path / "never" / "00-quantize.tuning.json").read_text())
    assert len(history["tuning"]["trials"]) == 2 and history["tuning"]["passed"] is False
    assert not (tmp_path / "never" / "report.json").exists()
    assert not (tmp_path / "never" / "artifacts" / "00-quantize.onnx").exists()


def test_keep_best_marks_a_failed_gate(hostile_dir, tmp_path):
    q = "{accuracy_criterion: {max_drop: 1.0, max_trials: 1, on_failure: keep_best}}"
    res = _run(write_recipe(hostile_dir, q, name="keep"), tmp_path / "keep")
    report = json.loads((tmp_path / "keep" / "report.json").read_text())
    gate = next(g for g in report["gates"] if g["name"].endswith("accuracy_criterion"))
    assert gate["passed"] is False and gate["value"] > 1.0
    assert _quant_step(report)["details"]["tuning"]["kept_trial"] == 1
    assert res.exit_code in (0, 1)


def test_metric_the_data_cannot_provide(hostile_dir, tmp_path):
    # mse against labels of shape [N] cannot score [N, 10] logits
    res = _run(write_recipe(hostile_dir, "{accuracy_criterion: {max_drop: 1.0, metric: mse}}", name="badmetric"),
               tmp_path / "bad")
    assert res.exit_code == 2, res.output
    assert "mse" in res.output and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["nncf", "inc"])
def test_other_engines_plain_and_tuned(hostile_dir, tmp_path, engine):
    for name, q in [(f"{engine}-plain", f"{{engine: {engine}}}"),
                    (f"{engine}-tuned", f"{{engine: {engine}, accuracy_criterion: {{max_drop: 100.0}}}}")]:
        res = _run(write_recipe(hostile_dir, q, name=name, evaluation=100), tmp_path / name)
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / name / "report.json").read_text())
        step = _quant_step(report)
        assert step["details"]["engine"] == engine
        import onnx

        g = onnx.load(str(tmp_path / name / "artifacts" / "00-quantize.onnx")).graph
        assert any(n.op_type == "QuantizeLinear" for n in g.node)  # a real QDQ model
        if name.endswith("tuned"):
            assert step["details"]["tuning"]["trials"] and step["details"]["tuning"]["passed"]


def test_inc_needs_a_torch_model(hostile_dir, tmp_path):
    onnx_dir = tmp_path / "o"
    onnx_dir.mkdir()
    first = _run(write_recipe(hostile_dir, "{mode: static}", name="exp"), tmp_path / "exp")
    assert first.exit_code == 0
    shutil.copy(tmp_path / "exp" / "artifacts" / "baseline.onnx", onnx_dir / "m.onnx")
    (onnx_dir / "r.yaml").write_text(
        "name: r\nmodel: {onnx: m.onnx}\ndata: {source: digits, calibration: {samples: 64}, "
        "evaluation: {samples: 50}}\nsteps: [{quantize: {engine: inc}}]\n")
    res = CliRunner().invoke(cli, ["run", str(onnx_dir / "r.yaml"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "torch model" in res.output
