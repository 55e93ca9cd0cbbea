"""Paired timing in the product: `compressor bench A B --interleave`, and the min_speedup
gate of `compressor run` computed from interleaved timing of baseline and compressed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from compressor.cli.main import _register, cli
from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import Report

WIDTH = 256


def _mlp(path: Path, layers: int) -> Path:
    """x[1, 256] -> ``layers`` x (MatMul 256x256 + Relu): latency grows with ``layers``."""
    rng = np.random.default_rng(layers)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        prev = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, WIDTH])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def test_bench_interleave_reports_the_paired_speedup(tmp_path):
    big, small = _mlp(tmp_path / "big.onnx", 16), _mlp(tmp_path / "small.onnx", 2)
    _register()
    out = tmp_path / "paired.json"
    res = CliRunner().invoke(cli, ["bench", str(big), str(small), "--interleave", "--rounds", "6", "--per-round", "5",
                                   "--warmup", "3", "--threads", "1", "--out", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    first, second = report["results"]
    assert [first["variant"], second["variant"]] == ["big", "small"]
    assert "paired" not in first and first["latency_ms"]["n"] == 6 * 5
    p = second["paired"]
    assert p["against"] == "big" and p["rounds"] == 6 and p["per_round"] == 5
    assert p["p10"] <= p["speedup"] <= p["p90"]
    # 2 layers against 16: faster whatever the machine's load, since both share it round by round
    assert p["speedup"] > 2, p
    assert f"{p['speedup']:.2f}x [" in res.output  # the terminal table shows the paired speedup and spread
    assert "([p10-p90]: paired" in res.output  # ... and says so (not eaten as rich markup)


@pytest.mark.parametrize("args,message", [
    (["a.onnx", "--interleave"], "--interleave times two or more MODELs"),
    (["a.onnx", "b.onnx"], "several MODELs are timed together with --interleave"),
])
def test_bench_interleave_usage(tmp_path, args, message):
    _register()
    res = CliRunner().invoke(cli, ["bench", *args])
    assert res.exit_code == 2 and message in res.output


def _report(paired: dict | None) -> Report:
    row = {"target": "onnxruntime-cpu", "precision": "fp32", "latency_ms": {"p50": 1.0, "p90": 1, "p99": 1,
                                                                           "mean": 1, "std": 0}}
    comp = {**row, "variant": "compressed", "precision": "int8",
            "latency_ms": {**row["latency_ms"], "p50": 0.8}, **({"paired": paired} if paired else {})}
    return Report.model_validate({"recipe": "r", "results": [{**row, "variant": "baseline"}, comp]})


def test_min_speedup_uses_the_paired_speedup_when_the_report_has_it():
    limits = GateLimits(min_speedup=1.5)
    (seq,) = evaluate_gates(_report(None), limits)
    assert seq.value == 1.25 and not seq.passed and "sequential" in seq.detail
    paired = {"against": "baseline", "speedup": 1.6, "p10": 1.5, "p90": 1.7, "rounds": 30, "per_round": 10,
              "p50_ms": 0.62, "against_p50_ms": 1.0}
    (g,) = evaluate_gates(_report(paired), limits)
    assert g.value == 1.6 and g.passed and g.detail.startswith("compressed@onnxruntime-cpu paired: median of 30")


def test_run_computes_min_speedup_from_interleaved_timing(tmp_path):
    from tests.reliability_fixtures import write_tiny_recipe

    recipe = write_tiny_recipe(tmp_path, gates={"min_speedup": 0.01})
    _register()
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    comp = next(r for r in report["results"] if r["variant"] == "compressed")
    p = comp["paired"]
    assert p["against"] == "baseline" and p["rounds"] == 30 and p["speedup"] > 0
    assert "paired" not in next(r for r in report["results"] if r["variant"] == "baseline")
    (gate,) = [g for g in report["gates"] if g["name"] == "min_speedup"]
    assert gate["value"] == pytest.approx(p["speedup"], abs=1e-3) and "paired" in gate["detail"]
    # `compressor check` re-evaluates the recorded gate from the same paired figure
    res = CliRunner().invoke(cli, ["check", str(tmp_path / "run" / "report.json"), "--min-speedup", "1000"])
    assert res.exit_code == 1 and "paired" in res.output
