"""End to end: a tiny real model through export, INT8 and the benchmark, and the
bad inputs of the quickstart issue (one clear line, right exit code, nothing half-written)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest


def test_run_end_to_end_writes_report(cli, tiny_recipe, tmp_path):
    out = tmp_path / "run"
    res = cli("run", tiny_recipe, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1 and report["recipe"] == "tiny"
    rows = {(r["variant"], r["target"]): r for r in report["results"]}
    base, int8 = rows[("baseline", "onnxruntime-cpu")], rows[("compressed", "onnxruntime-cpu")]
    assert base["precision"] == "fp32" and int8["precision"] == "int8"
    # the tiny model is really trained: accuracy well above chance (0.1), INT8 close to FP32
    assert base["accuracy"]["value"] > 0.8
    assert abs(base["accuracy"]["value"] - int8["accuracy"]["value"]) < 0.05
    assert base["accuracy"]["samples"] == 300
    assert base["parity"]["passed"] and base["parity"]["max_abs_diff"] < 1e-3
    assert int8["parity"]["top1_agreement"] > 0.9
    for r in (base, int8):
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert lat["n"] >= 20 and r["throughput_per_s"] > 0 and r["size_bytes"] > 0
    assert int8["size_bytes"] < base["size_bytes"]
    export = next(s for s in report["steps"] if s["kind"] == "export")
    assert export["details"]["parity_vs_torch"]["max_abs_diff"] < 1e-4
    quant = next(s for s in report["steps"] if s["kind"] == "quantize")
    assert quant["details"]["format"] == "QDQ" and quant["details"]["activation_type"] == "uint8"
    assert report["gates"][0]["name"] == "max_accuracy_drop" and report["gates"][0]["passed"]
    assert report["environment"]["runtimes"]["onnxruntime"]
    # the device: detected for a host target; the INT8 settings chosen for it and why
    from compressor.targets.devices import detect_host
    from compressor.targets.quant_defaults import device_defaults

    host = detect_host()
    assert report["environment"]["device"]["label"] == host.label
    assert int8["device"]["deploy"] == {**host.describe(), "source": "detected"}
    assert int8["accuracy_kernels"] == "device"
    expected = device_defaults("onnxruntime", host)
    # the suite runs with COMPRESSOR_QUANT_CHOOSE=table (tests/conftest.py): the table, marked unmeasured
    assert int8["device"]["quantization"]["reason"] == "table (unmeasured): " + expected.reason
    assert int8["device"]["quantization"]["choose"] == "table"
    assert quant["details"]["format_choice"]["source"] == "table"
    assert quant["details"]["weight_type"] == expected.settings["weight_type"]
    md = (out / "report.md").read_text()
    assert "| compressed | onnxruntime-cpu | int8 |" in md
    assert f"onnxruntime-cpu: {host.label} (detected); INT8 settings filled in:" in md and expected.reason in md
    assert (out / "recipe.resolved.yaml").exists()
    assert not list(out.rglob("*.tmp")), "no temporary files left behind"


def _quant_details(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return next(s for s in report["steps"] if s["kind"] == "quantize")["details"]


@pytest.mark.parametrize("calibration", ["entropy", "percentile"])
def test_calibration_methods(cli, write_recipe, tmp_path, calibration):
    p = write_recipe(replace={"calibration: minmax": f"calibration: {calibration}",
                              "samples: 128": "samples: 32"})
    res = cli("run", p, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 0, res.output
    assert _quant_details(tmp_path / "run")["calibration"] == calibration


def test_dynamic_quantization(cli, write_recipe, tmp_path):
    p = write_recipe(replace={"mode: static, calibration: minmax": "mode: dynamic"})
    res = cli("run", p, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 0, res.output
    d = _quant_details(tmp_path / "run")
    assert d["mode"] == "dynamic" and d["calibration_samples"] == 0


@pytest.mark.slow
def test_onnx_model_input(cli, tiny_recipe, write_recipe, tmp_path):
    first = tmp_path / "first"
    assert cli("run", tiny_recipe, "--out", first, "-q").exit_code == 0
    onnx_file = first / "artifacts" / "baseline.onnx"
    p = write_recipe(replace={"  weights: ": "  #", "  factory: ": f"  onnx: {onnx_file}\n  #"}, name="onnx.yaml")
    res = cli("run", p, "--out", tmp_path / "second", "-q")
    assert res.exit_code == 0, res.output
    a = json.loads((first / "report.json").read_text())["results"][0]["accuracy"]["value"]
    b = json.loads((tmp_path / "second" / "report.json").read_text())["results"][0]["accuracy"]["value"]
    assert a == b


def test_failed_gate_exits_1(cli, write_recipe, tmp_path):
    p = write_recipe(replace={"gates: {max_accuracy_drop: 5.0}": "gates: {min_speedup: 1000}"})
    res = cli("run", p, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 1
    assert "FAIL" in res.output
    # only what failed: no "0 target run(s) failed" before it
    assert res.output.strip().splitlines()[-1] == "Error: 1 gate failed (min_speedup)"
    assert (tmp_path / "run" / "report.json").exists(), "a failed gate still writes the report"


# --------------------------------------------------------------------------- bad input


def _expect_error(res, code: int, *fragments: str) -> None:
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1, res.output
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in errors[0], errors[0]


def test_missing_weights_file(cli, write_recipe, tmp_path):
    p = write_recipe(replace={"tiny.safetensors": "nope.safetensors"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2, "nope.safetensors does not exist")


def test_weights_for_another_architecture(cli, write_recipe, tmp_path):
    import torch
    from safetensors.torch import save_file

    w = tmp_path / "other.safetensors"
    save_file(torch.nn.Linear(3, 2).state_dict(), str(w))
    p = write_recipe(replace={"weights: ": f"weights: {w}  #"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2, "do not match the model architecture", "missing")


def test_pickle_that_is_not_weights_only_is_refused(cli, write_recipe, tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    w = tmp_path / "evil.pt"
    with open(w, "wb") as f:
        pickle.dump({"weight": Payload()}, f)
    p = write_recipe(replace={"weights: ": f"weights: {w}  #"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2, "refused", "safetensors")
    assert not marker.exists(), "the pickle payload must never run"


def test_corrupt_onnx_file(cli, write_recipe, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not protobuf" * 10)
    p = write_recipe(replace={"  weights: ": "  #", "  factory: ": f"  onnx: {bad}\n  #"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2, "bad.onnx")


def test_input_shape_that_does_not_fit(cli, write_recipe, tmp_path):
    p = write_recipe(replace={"input_shape: [1, 1, 8, 8]": "input_shape: [1, 3, 8, 8]"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2)


def test_calibration_with_nan(cli, write_recipe, tmp_path):
    from compressor.data import load_split

    ds = load_split("digits", "train")
    x = ds.inputs["input"].copy()
    x[3, 0, 2, 2] = np.nan
    npz = tmp_path / "nan.npz"
    np.savez(npz, x=x, y=ds.labels)
    p = write_recipe(replace={"source: digits": f"source: {{npz: {npz}}}"})
    out = tmp_path / "run"
    _expect_error(cli("run", p, "--out", out), 2, "NaN")
    assert not (out / "report.json").exists()
    assert not list(out.rglob("*.tmp"))


def test_debug_shows_traceback(runner, write_recipe, tmp_path):
    from compressor.cli.main import _register, cli as group

    _register()
    p = write_recipe(replace={"tiny.safetensors": "nope.safetensors"})
    res = runner.invoke(group, ["--debug", "run", str(p), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "Traceback" in res.output


def test_unknown_node_to_exclude_is_an_error(cli, write_recipe, tmp_path):
    p = write_recipe(replace={"calibration: minmax": "calibration: minmax, nodes_to_exclude: [node_conv2d_99]"})
    _expect_error(cli("run", p, "--out", tmp_path / "run"), 2, "node_conv2d_99", "not in the model's graph")


def test_known_node_to_exclude_stays_fp32(cli, write_recipe, tmp_path):
    import onnx

    first = tmp_path / "first"
    p = write_recipe(replace={"calibration: minmax": "calibration: minmax, nodes_to_exclude: [node_linear]"})
    res = cli("run", p, "--out", first, "-q")
    assert res.exit_code == 0, res.output
    q = onnx.load(str(first / "artifacts" / "00-quantize.onnx"))
    gemm = next(n for n in q.graph.node if n.name == "node_linear")
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert all(producers.get(i) != "DequantizeLinear" for i in gemm.input), "excluded node must read FP32 tensors"


def test_explicit_quantize_settings_win_over_target_preferences(cli, write_recipe, tmp_path):
    # onnxruntime-cpu asks for U8/S8 per-channel; a recipe that asks for ORT's own S8/S8
    # per-tensor defaults gets exactly that (the target only fills in unset keys)
    p = write_recipe(replace={"mode: static, calibration: minmax":
                              "mode: static, calibration: minmax, per_channel: false, activation_type: int8"})
    res = cli("run", p, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 0, res.output
    d = _quant_details(tmp_path / "run")
    assert d["activation_type"] == "int8" and d["per_channel"] is False
    # in the model itself, not only in the report: int8 input zero point, one weight scale per tensor
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tmp_path / "run" / "artifacts" / "00-quantize.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    assert inits["input_zero_point"].data_type == onnx.TensorProto.INT8
    weight_scales = [numpy_helper.to_array(i) for n, i in inits.items() if n.endswith("weight_scale")]
    assert weight_scales and all(s.size == 1 for s in weight_scales)


def test_strict_target_refuses_conflicting_quantize_settings(cli, write_recipe, tmp_path):
    # TensorRT runs only S8/S8 symmetric QDQ: an explicit uint8 is refused before any work,
    # by validate and by run (TensorRT need not be installed for this check)
    p = write_recipe(replace={"mode: static, calibration: minmax": "mode: static, activation_type: uint8",
                              "targets: [onnxruntime-cpu]": "targets: [onnxruntime-cpu, tensorrt]"})
    for args in (("validate", p), ("run", p, "--out", tmp_path / "run", "-q")):
        res = cli(*args)
        assert res.exit_code == 2, res.output
        assert "activation_type: uint8 (needs int8), which target 'tensorrt' cannot run" in res.output
    assert not (tmp_path / "run" / "artifacts").exists()


def test_targets_share_one_model_when_explicit_settings_make_them_equal(cli, write_recipe, tmp_path):
    # onnxruntime-cpu and tensorrt ask for different quantization; a recipe that sets every key
    # they differ on (to values TensorRT accepts) gives both the same model: quantized once
    both = ("mode: static, calibration: minmax, activation_type: int8, weight_type: int8, per_channel: true, "
            "symmetric_activations: true, symmetric_weights: true, quantize_bias: false")
    p = write_recipe(replace={"mode: static, calibration: minmax": both,
                              "targets: [onnxruntime-cpu]": "targets: [onnxruntime-cpu, tensorrt]"})
    res = cli("run", p, "--out", tmp_path / "run", "-q")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    # exit 1 exactly when a target failed (TensorRT where it is unavailable) or a gate failed
    trt_ok = all(r.get("status", "ok") == "ok" for r in report["results"] if r["target"] == "tensorrt")
    failed = [r for r in report["results"] if r.get("status") == "failed"] + [g for g in report["gates"] if not g["passed"]]
    assert res.exit_code == (1 if failed else 0), res.output
    assert trt_ok or "target run" in res.output, res.output
    steps = [s for s in report["steps"] if s["kind"] == "quantize"]
    assert [s["name"] for s in steps] == ["00-quantize"]
    assert steps[0]["details"]["targets"] == ["onnxruntime-cpu", "tensorrt"]


def test_parity_is_judged_against_the_model_a_variant_was_made_from(cli, write_recipe, tmp_path):
    """A pruned model's outputs differ from the unpruned original on purpose: its INT8 form is
    judged against the pruned FP32 model, and the pruned model against itself."""
    import json

    recipe = write_recipe(replace={"steps:\n": "steps:\n  - prune: {ratio: 0.5}\n",
                                   "max_accuracy_drop: 5.0": "max_accuracy_drop: 100.0"})  # untuned pruning
    res = cli("run", recipe, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    ref = {r["variant"]: r["parity"]["reference"] for r in report["results"]}
    assert ref == {"baseline": "baseline", "compressed-fp32": "compressed-fp32", "compressed": "compressed-fp32"}
    pruned = next(r for r in report["results"] if r["variant"] == "compressed-fp32")
    assert pruned["parity"]["passed"] is True and pruned["parity"]["max_abs_diff"] < 1e-3
    assert "vs compressed-fp32" in (tmp_path / "run" / "report.md").read_text()
