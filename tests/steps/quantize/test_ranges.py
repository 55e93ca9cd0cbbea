"""Per-tensor activation range choice: the quantization error that picks a range, and the tuner's trial."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.steps.quantize.ranges import quantization_mse
from tests.accuracy_fixtures import write_recipe
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net

_register()


def test_quantization_error_prefers_a_tight_range_for_a_rare_outlier():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 1_000_000).astype(np.float32)
    x[0] = 40.0  # one outlier in a million: min/max spends most of the 255 steps on it
    tight = quantization_mse(x, -4.0, 4.0, "uint8", False)
    wide = quantization_mse(x, float(x.min()), float(x.max()), "uint8", False)
    assert tight < wide
    # without the outlier, a range that clips the tails loses to min/max
    y = rng.uniform(-1.0, 1.0, 100_000).astype(np.float32)
    assert quantization_mse(y, -1.0, 1.0, "uint8", False) < quantization_mse(y, -0.5, 0.5, "uint8", False)
    # the error is zero for values on the grid, for every activation type
    for t, sym in (("uint8", False), ("int8", True), ("uint8", True)):
        assert quantization_mse(np.zeros(10, np.float32), -1.0, 1.0, t, sym) == 0.0


def test_tuner_tries_per_tensor_ranges_before_any_fallback(hostile_dir, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", str(write_recipe(hostile_dir, "{accuracy_criterion: {max_drop: 1.0}}",
                                                             name="ranges")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    tuning = next(s for s in report["steps"] if s["kind"] == "quantize")["details"]["tuning"]
    labels = [t["label"] for t in tuning["trials"]]
    ranges = next(i for i, lab in enumerate(labels) if lab.endswith("+per-tensor ranges"))
    fallbacks = [i for i, t in enumerate(tuning["trials"]) if t["fallback"]]
    assert fallbacks and ranges < fallbacks[0], labels
    assert tuning["trials"][ranges]["metric"] is not None  # scored, not errored


@pytest.mark.slow
def test_per_tensor_setting_tries_per_channel_on_sensitive_layers_before_fallback(hostile_dir, tmp_path):
    out = tmp_path / "p"
    q = "{per_channel: false, accuracy_criterion: {max_drop: 1.0}}"
    res = CliRunner().invoke(cli, ["run", str(write_recipe(hostile_dir, q, name="prec")), "--out", str(out)])
    assert res.exit_code == 0, res.output
    tuning = next(s for s in json.loads((out / "report.json").read_text())["steps"]
                  if s["kind"] == "quantize")["details"]["tuning"]
    labels = [t["label"] for t in tuning["trials"]]
    first = next(i for i, lab in enumerate(labels) if "+per-channel 1" in lab)
    fallbacks = [i for i, t in enumerate(tuning["trials"]) if t["fallback"]]
    assert not fallbacks or first < fallbacks[0], labels
    assert tuning["trials"][first]["metric"] is not None and tuning["passed"]


def test_weight_axes_follow_ort(dw_onnx):  # noqa: F811
    from compressor.steps.quantize.accuracy_aware import weight_axes

    axes = weight_axes(dw_onnx)
    ops = {n.name: n.op_type for n in onnx.load(str(dw_onnx)).graph.node}
    assert sorted(ops[n] for n in axes) == ["Conv"] * 4 + ["Gemm"]
    assert all(ax == 0 for n, (_, ax) in axes.items() if ops[n] == "Conv")


def test_percentile_variant_of_a_moving_average_setting_is_a_real_trial(hostile_dir, tmp_path):
    """ORT's moving average is a min/max option: the percentile variant drops it (it used to error)."""
    out = tmp_path / "ma"
    q = "{moving_average: true, calibration_batch_size: 1, accuracy_criterion: {max_drop: 1.0, max_trials: 4}}"
    res = CliRunner().invoke(cli, ["run", str(write_recipe(hostile_dir, q, name="ma")), "--out", str(out)])
    history = json.loads((out / "00-quantize.tuning.json").read_text()) if res.exit_code else \
        {"tuning": next(s for s in json.loads((out / "report.json").read_text())["steps"]
                        if s["kind"] == "quantize")["details"]["tuning"]}
    pct = next(t for t in history["tuning"]["trials"] if t["label"].startswith("calibration=percentile"))
    assert "error" not in pct and pct["metric"] is not None, pct
