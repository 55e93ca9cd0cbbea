"""Accuracy-aware INT8 scored by a reference metric (agreement with FP32, no labels needed)
on a held-out tuning split, and the NNCF engine's options."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from tests.accuracy_fixtures import write_recipe
from compressor.cli.main import _register, cli

_register()


def _with_train_split(path, samples: int = 300):
    """The fixture's recipe plus a data.train split for the tuner to score on."""
    text = path.read_text().replace("  evaluation:", f"  train: {{split: train, samples: {samples}}}\n  evaluation:", 1)
    path.write_text(text)
    return path


def test_agreement_criterion_tunes_on_the_train_split(hostile_dir, tmp_path):
    q = "{accuracy_criterion: {max_drop: 2.0, metric: top1_agreement, tuning_data: train}}"
    recipe = _with_train_split(write_recipe(hostile_dir, q, name="agree"))
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    tuning = next(s for s in report["steps"] if s["kind"] == "quantize")["details"]["tuning"]
    assert tuning["metric"] == "top1_agreement" and tuning["tuning_data"] == "train"
    assert tuning["fp32_metric"] == 1.0          # FP32 agrees with itself
    assert tuning["samples"] == 300              # the train split, not the 300-sample evaluation set by chance:
    assert tuning["trials"][0]["drop"] > 20      # plain PTQ breaks agreement
    assert tuning["passed"] and len(tuning["fallback_nodes"]) == 2, tuning["fallback_nodes"]


def test_tuning_data_train_needs_a_train_split(hostile_dir, tmp_path):
    # digits has a train split, so point data.train at one that does not exist
    q = "{accuracy_criterion: {max_drop: 2.0, metric: top1_agreement, tuning_data: train}}"
    recipe = write_recipe(hostile_dir, q, name="notrain")
    recipe.write_text(recipe.read_text().replace("  evaluation:", "  train: {split: nosuch}\n  evaluation:", 1))
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and "nosuch" in res.output and "Traceback" not in res.output


def _run_nncf(hostile_dir, tmp_path, nncf_opts: str, exclude: str = "[]"):
    q = f"{{engine: nncf, nodes_to_exclude: {exclude}, nncf: {nncf_opts}}}"
    recipe = write_recipe(hostile_dir, q, name="nncf", evaluation=50)
    return CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "n")])


@pytest.mark.slow
def test_nncf_mixed_preset_full_bias_correction_and_exclusion(hostile_dir, tmp_path):
    res = _run_nncf(hostile_dir, tmp_path, "{preset: mixed, bias_correction: full, subset_size: 32}", "[node_linear]")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "n" / "report.json").read_text())
    details = next(s for s in report["steps"] if s["kind"] == "quantize")["details"]
    assert details["preset"] == "mixed" and details["bias_correction"] == "full"
    assert details["calibration_samples"] == 32 and details["nodes_excluded"] == ["node_linear"]
    g = onnx.load(str(tmp_path / "n" / "artifacts" / "00-quantize.onnx")).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    gemms = {n.name: n for n in g.node if n.op_type in ("Gemm", "MatMul")}
    assert not any(i in dq_out for i in gemms["node_linear"].input)   # excluded: runs in FP32
    assert any(i in dq_out for n, node in gemms.items() if n != "node_linear" for i in node.input)
    # mixed preset: asymmetric activations, i.e. some activation zero point is not 0
    init = {t.name: t for t in g.initializer}
    zps = [onnx.numpy_helper.to_array(init[n.input[2]]) for n in g.node
           if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in init]
    assert any(z.size == 1 and int(z) != 0 for z in zps)


def test_nncf_unknown_excluded_node_is_a_clear_error(hostile_dir, tmp_path):
    res = _run_nncf(hostile_dir, tmp_path, "{subset_size: 16}", "[no_such_node]")
    assert res.exit_code == 1, res.output
    assert "NNCF rejected" in res.output and "no_such_node" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_nncf_accuracy_control_runs_with_an_agreement_metric(hostile_dir, tmp_path):
    # plain NNCF PTQ breaks the hostile tensor, so quantize_with_accuracy_control must run
    # (its validation_fn receives an iterable, not a list: this once crashed)
    q = ("{engine: nncf, nncf: {subset_size: 64}, accuracy_criterion: "
         "{max_drop: 2.0, metric: top1_agreement, max_trials: 6, on_failure: keep_best}}")
    recipe = write_recipe(hostile_dir, q, name="qwac", evaluation=120)
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "q")])
    assert "Traceback" not in res.output
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    # keep_best may keep a model that misses the criterion: then, and only then, a gate fails
    failed = [g["name"] for g in report["gates"] if not g["passed"]] + \
        [r["target"] for r in report["results"] if r.get("status") == "failed"]
    assert res.exit_code == (1 if failed else 0), (failed, res.output)
    tuning = next(s for s in report["steps"] if s["kind"] == "quantize")["details"]["tuning"]
    labels = [t["label"] for t in tuning["trials"]]
    assert labels[0] == "nncf.quantize" and tuning["trials"][0]["passed"] is False, tuning["trials"]
    assert labels[-1] == "nncf.quantize_with_accuracy_control"
    assert tuning["trials"][-1]["fallback"], "accuracy control reverted no quantizer"
