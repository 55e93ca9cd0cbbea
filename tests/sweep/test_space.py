"""--space parsing, device labels and the per-device choice: no Ray, no model run (fast)."""

from __future__ import annotations

import pytest

from compressor.errors import CompressorError, RecipeError
from compressor.recipe import load_recipe
from compressor.report.fleet import device_choice
from compressor.report.model import Report, Result
from compressor.sweep import parse_dimension
from compressor.sweep.nodes import cluster_devices, node_resources, select_devices
from compressor.sweep.space import check_space, space_variant


def test_dimensions_parse_and_set_the_recipe(tiny_recipe):
    dims = [parse_dimension("data.calibration.samples=int:32:128:32"),
            parse_dimension("steps[-1].quantize.calibration=minmax,percentile"),
            parse_dimension("benchmark.min_duration_s=float:0.01:0.1:log")]
    assert [(d.kind, d.low, d.high, d.step, d.log) for d in dims] == [
        ("int", 32, 128, 32, False), ("categorical", None, None, None, False), ("float", 0.01, 0.1, None, True)]
    r = load_recipe(tiny_recipe)
    check_space(r, dims)
    v = space_variant(r, dims, {d.name: x for d, x in zip(dims, (64, "percentile", 0.02))}, "trial007")
    assert (v.name, v.recipe.data.calibration.samples, v.recipe.steps[0].quantize.calibration) == \
        ("trial007", 64, "percentile")
    assert v.settings == {"data.calibration.samples": 64, "steps[-1].quantize.calibration": "percentile",
                          "benchmark.min_duration_s": 0.02}


@pytest.mark.parametrize("option, message", [
    ("steps[0].quantize.calibration=float:0.1:0.5", "steps[0].quantize.calibration=0.1"),  # the bound is checked
    ("data.calibration.samples=int:0:64", "data.calibration.samples=0"),
    ("steps[1].prune.ratio=float:0.2:0.8", "index [1] is out of range"),
    ("steps[0].prune.ratio=float:0.2:0.8", "steps[0] is a quantize step, not prune"),
    ("data.calibration.samples=int:64:32", "LOW must be below HIGH"),
    ("data.calibration.samples=int:a:64", "'a' is not an int"),
    ("benchmark.min_duration_s=float:0:1:log", "a log range needs LOW > 0"),
    ("benchmark.min_duration_s=float:0.1", "expected float:LOW:HIGH[:log]"),
    ("steps[0].quantize.calibration=minmax", "at least 2 values"),
])
def test_bad_space_is_one_error(tiny_recipe, option, message):
    with pytest.raises(RecipeError) as e:
        check_space(load_recipe(tiny_recipe), [parse_dimension(option)])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_bad_search_options_exit_2_before_anything_runs(cli, tiny_recipe, tmp_path):
    out = tmp_path / "s"
    res = cli("sweep", tiny_recipe, "--search", "optuna", "--space", "steps[0].quantize.calibraton=minmax,percentile",
              "--out", out)
    assert res.exit_code == 2 and "calibraton: unknown key" in res.output and not out.exists()
    res = cli("sweep", tiny_recipe, "--search", "optuna", "--grid", "steps[0].quantize.calibration=minmax", "--out", out)
    assert res.exit_code == 2 and "--grid options, or --search optuna with --space" in res.output
    assert not out.exists()


def test_device_labels_select_nodes(monkeypatch):
    assert node_resources("x86-64-avx2") == {"bench": 1, "bench@x86-64-avx2": 1}
    with pytest.raises(RecipeError, match="device label"):
        node_resources("my board")
    nodes = [{"Alive": True, "Resources": {"CPU": 1.0}},
             {"Alive": True, "Resources": {"bench": 1.0, "bench@x86-64-avx2": 1.0}},
             {"Alive": True, "Resources": {"bench": 1.0, "bench@x86-64-avx2": 1.0}},
             {"Alive": False, "Resources": {"bench": 1.0, "bench@arm64": 1.0}},
             {"Alive": True, "Resources": {"bench": 1.0, "bench@rpi5": 1.0}}]
    available = cluster_devices(nodes)
    assert available == {"rpi5": 1, "x86-64-avx2": 2}
    assert select_devices("all", available) == ["rpi5", "x86-64-avx2"]
    assert select_devices("x86-64-avx2", available) == ["x86-64-avx2"]
    with pytest.raises(CompressorError, match="no node of arm64"):
        select_devices("x86-64-avx2,arm64", available)
    with pytest.raises(CompressorError, match="no Ray node declares a device"):
        select_devices("all", {})


def _row(variant: str, p50: float, acc: float, device: str) -> Result:
    return Result.model_validate({"variant": variant, "target": "t", "precision": "int8", "host": "h",
                                  "bench_device": device, "accuracy": {"metric": "top1", "value": acc},
                                  "latency_ms": {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "std": 0.0}})


def test_one_variant_for_all_devices_minimizes_the_worst_loss():
    # speedups: a is best on d1 (4x) but poor on d2 (1x of 2x); b is 3x on d1 and 2x on d2
    speed = {("a", "d1"): 4.0, ("b", "d1"): 3.0, ("a", "d2"): 1.0, ("b", "d2"): 2.0}
    rows = []
    for (v, d), s in speed.items():
        rows += [_row(f"{v}/{d}/baseline", 4.0, 0.9, d), _row(f"{v}/{d}/compressed", 4.0 / s, 0.88, d)]
    units = [{"name": f"{v}/{d}", "variant": v, "device": d, "gates_passed": True} for v, d in speed]
    choice = device_choice(Report(recipe="r", results=rows), units)
    t = choice["targets"]["t"]
    assert choice["devices"] == ["d1", "d2"]
    assert {d: b["variant"] for d, b in t["best"].items()} == {"d1": "a", "d2": "b"}
    assert t["one_for_all"]["variant"] == "b" and t["one_for_all"]["worst_speedup_loss_pct"] == 25.0
    assert t["one_for_all"]["per_device"]["d2"]["speedup_loss_pct"] == 0.0
    # a variant that failed its gates on one device cannot be the one for all
    units = [u if u["name"] != "b/d1" else {**u, "gates_passed": False} for u in units]
    t = device_choice(Report(recipe="r", results=rows), units)["targets"]["t"]
    assert t["one_for_all"]["variant"] == "a" and t["best"]["d1"]["variant"] == "a"
