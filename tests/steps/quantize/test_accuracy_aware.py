"""Accuracy-aware INT8 on a model with one quantization-hostile tensor, and each engine."""

from __future__ import annotations

import json
import math
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


@pytest.mark.slow
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
    # the report says what was done: 64x32 + 32x17 + 17x10 MACs per sample, fc0's 2048 in INT8
    macs = _quant_step(rt)["details"]["macs"]
    assert macs["macs"] == 64 * 32 + 32 * 17 + 17 * 10 and macs["int8_macs"] == 64 * 32
    assert sorted(macs["fp32_compute_nodes"]) == sorted(fell)
    assert _quant_step(rp)["details"]["macs"]["int8_mac_share"] == 1.0
    for page in ("report.md", "report.html"):
        text = (tmp_path / "t" / page).read_text()
        assert "MACs in INT8" in text and "74.1%" in text and "FP32 fallback of 2 node(s)" in text
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
    assert res.exit_code == 1, res.output  # the kept model fails its criterion: a failed gate
    assert "accuracy_criterion" in res.output


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


def _head_node(run_dir) -> str:
    """The node that writes the graph's output: the classifier, whose input carries the outlier."""
    import onnx

    g = onnx.load(str(run_dir / "artifacts" / "baseline.onnx")).graph
    return next(n.name for n in g.node if g.output[0].name in n.output)


def test_dynamic_tuner_falls_back_only_the_outlier_input_layer(hostile_dir, tmp_path):
    # dynamic INT8 quantizes each MatMul's input per tensor at run time: only the head reads the
    # outlier tensor; mid's outlier weight row is per-channel, so the head alone must fall back
    q = "{mode: dynamic, accuracy_criterion: {max_drop: 1.0}}"
    res = _run(write_recipe(hostile_dir, q, name="dyn"), tmp_path / "dyn")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "dyn" / "report.json").read_text())
    details = _quant_step(report)["details"]
    assert details["mode"] == "dynamic" and details["format"] == "QOperator"
    assert details["calibration_samples"] == 0
    tuning = details["tuning"]
    assert tuning["passed"] is True and tuning["trials"][0]["drop"] > 20
    # no calibration variants in dynamic mode: only per_channel and reduce_range are tried
    assert [t["label"] for t in tuning["trials"][:3]] == ["default", "per_channel=False", "reduce_range=True"]
    head = _head_node(tmp_path / "dyn")
    assert tuning["fallback_nodes"] == [head] and details["nodes_excluded"] == [head]
    assert tuning["sensitivity_top"][0]["node"] == head and len(tuning["sensitivity_top"]) == 3
    assert (_acc(report, "baseline") - _acc(report, "compressed")) * 100 <= 1.0 + 1e-9
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(tmp_path / "dyn" / "artifacts" / "00-quantize.onnx")).graph.node}
    assert ops[f"{head}_MatMul"] == "MatMul"  # ORT's Gemm -> MatMul rewrite, left in FP32
    assert sum(op == "MatMulInteger" for op in ops.values()) == 2


def test_a_trial_cap_leaves_the_fallback_its_share(hostile_dir, tmp_path):
    # before, max_trials: 3 went to three whole-model variants and the fallback never ran (the
    # issue's MobileNet run: 10 trials of variants, no model). Now the variants get half the cap
    # (global_share 0.5, rounded up): trial 3 falls back the head, which meets the criterion
    q = "{mode: dynamic, accuracy_criterion: {max_drop: 1.0, max_trials: 3}}"
    res = _run(write_recipe(hostile_dir, q, name="dyncap"), tmp_path / "cap")
    assert res.exit_code == 0, res.output
    tuning = _quant_step(json.loads((tmp_path / "cap" / "report.json").read_text()))["details"]["tuning"]
    labels = [t["label"] for t in tuning["trials"]]
    assert labels[:2] == ["default", "per_channel=False"] and len(labels) == 3, labels
    assert [t["phase"] for t in tuning["trials"]] == ["global", "global", "per-layer"]
    assert tuning["trials"][2]["passed"] and tuning["passed"] and len(tuning["fallback_nodes"]) == 1
    assert any("whole-model variant(s) skipped" in n for n in tuning["notes"]), tuning.get("notes")


def test_unmeetable_dynamic_criterion_fails_naming_the_best_model(hostile_dir, tmp_path):
    # one trial (the configured setting, which loses > 20 points): the error names the best
    # model found, where it was written and the settings that keep it
    q = "{mode: dynamic, accuracy_criterion: {max_drop: 1.0, max_trials: 1}}"
    res = _run(write_recipe(hostile_dir, q, name="dynnever"), tmp_path / "never")
    assert res.exit_code == 1, res.output
    history = json.loads((tmp_path / "never" / "00-quantize.tuning.json").read_text())
    trials = history["tuning"]["trials"]
    assert [t["label"] for t in trials] == ["default"] and trials[0]["drop"] > 20
    assert history["format"] == "QOperator" and history["tuning"]["passed"] is False
    assert not (tmp_path / "never" / "artifacts" / "00-quantize.onnx").exists()
    best = history["tuning"]["best"]
    assert best["trial"] == 1 and (tmp_path / "never" / "artifacts" / "00-quantize.tuning" / "trial001.onnx").is_file()
    text = " ".join(res.output.split())  # the terminal wraps long lines
    assert "best model found: trial #1 [default]" in text and f"drop {best['drop']:.2f}" in text
    assert "trial001.onnx" in text.replace(" ", "") and "on_failure: keep_best" in text
    assert f"max_drop: {math.ceil(best['drop'] * 100) / 100:g}" in text


@pytest.mark.parametrize("engine", ["nncf", "inc"])
def test_dynamic_mode_needs_the_onnxruntime_engine(hostile_dir, tmp_path, engine):
    q = f"{{engine: {engine}, mode: dynamic, accuracy_criterion: {{max_drop: 1.0}}}}"
    res = _run(write_recipe(hostile_dir, q, name=f"dyn-{engine}"), tmp_path / engine)
    assert res.exit_code == 1, res.output
    assert f"engine '{engine}' quantizes in mode: static only" in res.output
    assert "engine: onnxruntime" in res.output and "Traceback" not in res.output


def test_dynamic_candidates_are_the_source_nodes_ort_rewrites(tmp_path):
    """On a graph with each case: an embedding Gather, a MatMul with constant and one with
    run-time B, a Gemm ORT can rewrite and one (transA) it cannot. Each candidate name,
    given to nodes_to_exclude, must leave that node in FP32."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.tuning import dynamically_quantized_nodes
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in [("table", (10, 8)), ("w1", (8, 8)), ("w2", (8, 8)), ("w3", (8, 8)), ("b3", (8,))]]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["h"], name="embed"),
        helper.make_node("MatMul", ["h", "w1"], ["a"], name="mm_const"),
        helper.make_node("MatMul", ["a", "y"], ["b"], name="mm_runtime"),
        helper.make_node("Gemm", ["b", "w2"], ["c"], name="gemm_trans_a", transA=1),
        helper.make_node("Gemm", ["c", "w3", "b3"], ["out"], name="gemm", transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [8]),
                                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [8, 8])], inits)
    src = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(src))
    cfg = QuantizeConfig(mode="dynamic")

    def candidates(exclude: list[str]) -> list[str]:
        quantize_onnx(src, tmp_path / "q.onnx", cfg, None, nodes_to_exclude=exclude, skip_preprocess=True)
        return dynamically_quantized_nodes(src, tmp_path / "q.onnx")

    found = candidates([])
    assert found == ["embed", "mm_const", "gemm"]
    for name in found:
        assert candidates([name]) == [n for n in found if n != name]


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


def _failing_variant(monkeypatch, calibrations: tuple[str, ...] = ("percentile",)):
    """Fault injection: ORT's quantizer raises for one calibration method (as percentile did on
    sample counts that were not a multiple of the batch size); everything else is real."""
    from compressor.steps.quantize import onnxruntime_ptq

    real = onnxruntime_ptq._quantize

    def flaky(model_in, dst, cfg, *args, **kwargs):
        if cfg.calibration in calibrations:
            raise ValueError("setting an array element with a sequence (injected)")
        return real(model_in, dst, cfg, *args, **kwargs)

    monkeypatch.setattr(onnxruntime_ptq, "_quantize", flaky)


def test_a_trial_that_raises_is_recorded_and_tuning_goes_on(hostile_dir, tmp_path, monkeypatch):
    _failing_variant(monkeypatch)
    res = _run(write_recipe(hostile_dir, "{accuracy_criterion: {max_drop: 1.0}}", name="flaky"), tmp_path / "f")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    tuning = _quant_step(report)["details"]["tuning"]
    bad = next(t for t in tuning["trials"] if t["label"].startswith("calibration=percentile"))
    assert bad["passed"] is False and "inhomogeneous" not in bad["error"] and "injected" in bad["error"]
    assert bad["trial"] == 2 and len(tuning["trials"]) > 2 and tuning["passed"] is True
    assert (_acc(report, "baseline") - _acc(report, "compressed")) * 100 <= 1.0 + 1e-9
    for page in ("report.md", "report.html"):  # the reason reaches the report
        assert "error: ONNX Runtime quantization failed: ValueError: setting an array element" in (tmp_path / "f" / page).read_text()


def test_every_trial_raising_fails_with_the_history(hostile_dir, tmp_path, monkeypatch):
    _failing_variant(monkeypatch, ("minmax", "percentile"))
    q = "{accuracy_criterion: {max_drop: 1.0, max_trials: 4}}"
    res = _run(write_recipe(hostile_dir, q, name="allbad"), tmp_path / "a")
    assert res.exit_code == 1, res.output
    assert "accuracy criterion not met" in res.output and "error (" in res.output
    history = json.loads((tmp_path / "a" / "00-quantize.tuning.json").read_text())
    assert any(t.get("error") for t in history["tuning"]["trials"])
    assert not (tmp_path / "a" / "artifacts" / "00-quantize.onnx").exists()


def test_equalization_runs_once_per_tuning_run(hostile_dir, tmp_path, monkeypatch):
    """Equalization is an FP32 rewrite: the tuner makes the equalized model once and quantizes it
    for every trial and every node of the sensitivity analysis (before: once per candidate)."""
    from compressor.techniques import equalization as equalize

    calls = []
    real = equalize.equalize
    monkeypatch.setattr(equalize, "equalize", lambda *a, **k: calls.append(1) or real(*a, **k))
    q = "{equalization: true, accuracy_criterion: {max_drop: 1.0, tune_calibration: false}}"
    res = _run(write_recipe(hostile_dir, q, name="eq"), tmp_path / "eq")
    assert res.exit_code == 0, res.output
    step = _quant_step(json.loads((tmp_path / "eq" / "report.json").read_text()))
    tuning = step["details"]["tuning"]
    # a sensitivity analysis and fallback trials ran, all on one equalized model
    assert tuning["passed"] and len(tuning["fallback_nodes"]) == 2 and len(tuning["trials"]) >= 3
    assert step["details"]["equalization"] is True and calls == [1]


def test_mac_floor_stops_the_fallback_before_the_model_is_mostly_fp32(hostile_dir, tmp_path):
    # the hostile tensor needs 'mid' (544 MACs) and 'head' (170) in FP32: 74.1% of 2,762 MACs left
    # in INT8. A floor of 80% allows 'mid' (80.3%) but not both: the criterion counts as not met
    q = "{accuracy_criterion: {max_drop: 1.0, tune_calibration: false, min_int8_mac_share: 0.8}}"
    res = _run(write_recipe(hostile_dir, q, name="floor"), tmp_path / "floor")
    assert res.exit_code == 1, res.output
    assert "accuracy criterion not met" in res.output and "min_int8_mac_share 80%" in res.output
    history = json.loads((tmp_path / "floor" / "00-quantize.tuning.json").read_text())["tuning"]
    assert max(t["excluded_total"] for t in history["trials"]) == 1  # never both nodes
    assert "74.1% of MACs in INT8" in history["notes"][0]
    # a floor the answer keeps: the same recipe passes with both nodes FP32
    q = "{accuracy_criterion: {max_drop: 1.0, tune_calibration: false, min_int8_mac_share: 0.7}}"
    ok = _run(write_recipe(hostile_dir, q, name="floor-ok"), tmp_path / "ok")
    assert ok.exit_code == 0, ok.output
    tuning = _quant_step(json.loads((tmp_path / "ok" / "report.json").read_text()))["details"]["tuning"]
    assert tuning["passed"] and len(tuning["fallback_nodes"]) == 2 and "notes" not in tuning


def test_mac_floor_is_an_onnxruntime_setting(hostile_dir, tmp_path):
    q = "{engine: nncf, accuracy_criterion: {max_drop: 1.0, min_int8_mac_share: 0.8}}"
    res = _run(write_recipe(hostile_dir, q, name="floor-nncf"), tmp_path / "n")
    assert res.exit_code == 2, res.output
    assert "min_int8_mac_share applies to engine onnxruntime" in res.output and "Traceback" not in res.output
