"""Weight rounding (``weight_rounding: gptq | adaround``) on a real trained depthwise CNN: the same
scales and INT8 form, integers that differ from round-to-nearest, and a smaller error."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from compressor.cli.main import _register, cli
from compressor.data import load_split
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.steps.quantize.step import techniques
from compressor.techniques.weight_rounding import _adaround, _gptq, _Layer
from tests.accuracy_fixtures import write_recipe
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net

_register()


def _out(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _weights(path):
    """Integer weights and scales of the QDQ model's weight DequantizeLinear nodes, by initializer name."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    return {n.input[0]: (inits[n.input[0]], inits[n.input[1]]) for n in m.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8}


def test_gptq_solves_a_least_squares_rounding_better_than_nearest():
    # one layer, correlated inputs: the error that matters is (W - W_q) H (W - W_q)^T, not |W - W_q|
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4000)) + rng.normal(size=(1, 4000))  # a shared component correlates the inputs
    h = (x @ x.T)[None]
    w = rng.normal(size=(1, 8, 16))
    scale, zp = np.full((1, 8), 0.05), np.zeros((1, 8))
    q = _gptq(w, h, scale, zp, -127, 127)
    rtn = np.clip(np.round(w / 0.05), -127, 127)
    err = lambda ints: float(np.einsum("grd,gde,gre->", w - ints * 0.05, h, w - ints * 0.05))  # noqa: E731
    assert np.all(q == np.round(q)) and q.min() >= -127 and q.max() <= 127
    assert err(q) < 0.7 * err(rtn)
    assert np.abs(q - rtn).max() <= 2  # still a rounding of the same weights, not new weights


def test_adaround_learns_a_rounding_better_than_nearest():
    # the same least-squares problem: every weight ends on its floor or its ceiling (a rounding of
    # these weights, no other integer), and the output error falls well below nearest's
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4000)) + rng.normal(size=(1, 4000))
    h = (x @ x.T)[None]
    w = rng.normal(size=(1, 8, 16)) * 0.5
    scale, zp = np.full((1, 8), 0.05), np.zeros((1, 8))
    q, = _adaround([_Layer(w, scale, zp, -127, 127, h, 4000)], iters=600)
    rtn = np.clip(np.round(w / 0.05), -127, 127)
    err = lambda ints: float(np.einsum("grd,gde,gre->", w - ints * 0.05, h, w - ints * 0.05))  # noqa: E731
    assert q.shape == w.shape and np.all(q == np.round(q))
    assert np.all((q == np.floor(w / 0.05)) | (q == np.ceil(w / 0.05)))
    assert (q != rtn).sum() > 0
    assert err(q) < 0.7 * err(rtn), (err(q), err(rtn))


def test_adaround_stays_inside_the_integer_range_and_keeps_a_zero_point():
    # asymmetric uint8 rows whose weights sit at the range's ends: the clamp holds, the zero point counts
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 500))
    h = (x @ x.T)[None]
    scale, zp = np.full((1, 3), 0.1), np.full((1, 3), 128.0)
    w = np.clip(rng.normal(size=(1, 3, 6)) * 10, -12.8, 12.7)
    w[0, 0, 0], w[0, 1, 1] = -12.8, 12.7  # exactly the ends: integers 0 and 255
    other = _Layer(w[:, :2, :3] * 2, scale[:, :2] * 2, zp[:, :2], 0, 255, h[:, :3, :3], 500)  # optimised alongside
    q, q2 = _adaround([_Layer(w, scale, zp, 0, 255, h, 500), other], iters=200)
    assert q2.shape == (1, 2, 3) and q2.min() >= 0 and q2.max() <= 255
    assert q.min() >= 0 and q.max() <= 255
    assert q[0, 1, 1] == 255 and q[0, 0, 0] in (0, 1)  # clamped at the top; floor or ceiling at the bottom
    np.testing.assert_allclose((q - 128) * 0.1, w, atol=0.1 + 1e-9)  # within one step of each weight


def _nearest_and(method, dw_onnx, tmp_path):
    """The depthwise net quantized with round-to-nearest and with ``method``; test images and the
    FP32 outputs on them."""
    calib = load_split("digits", "train", 256, seed=1)
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))
    rtn, new = tmp_path / "rtn.onnx", tmp_path / f"{method}.onnx"
    quantize_onnx(dw_onnx, rtn, QuantizeConfig(), calib)
    info = quantize_onnx(dw_onnx, new, QuantizeConfig(weight_rounding=method), calib)
    return rtn, new, info, x, _out(dw_onnx, x)


@pytest.mark.isa  # the errors are measured on the INT8 kernels (U8S8 saturates without VNNI)
def test_gptq_keeps_the_qdq_form_and_lowers_the_output_error(dw_onnx, tmp_path):
    rtn, gptq, info, x, ref = _nearest_and("gptq", dw_onnx, tmp_path)
    # every Conv and the Linear, the depthwise ones included (each channel its own 3x3 Hessian)
    assert info["weight_rounded_layers"] == 5 and info["weight_output_error_ratio"] < 0.9
    a, b = _weights(rtn), _weights(gptq)
    assert a.keys() == b.keys()
    changed = 0
    for name, (q_rtn, s_rtn) in a.items():
        q_new, s_new = b[name]
        np.testing.assert_array_equal(s_new, s_rtn)       # the quantizer's scales, untouched
        assert q_new.dtype == q_rtn.dtype and q_new.shape == q_rtn.shape
        assert np.abs(q_new.astype(int) - q_rtn).max() <= 3
        changed += int((q_new != q_rtn).sum())
    assert changed > 0
    # the same ops (QDQ, runs on the same INT8 kernels), and closer to FP32 on data it was not fit to
    ops = lambda p: sorted(n.op_type for n in onnx.load(str(p)).graph.node)  # noqa: E731
    assert ops(rtn) == ops(gptq)
    mse = lambda p: float(np.mean((_out(p, x) - ref) ** 2))  # noqa: E731
    assert mse(gptq) < mse(rtn), (mse(gptq), mse(rtn))


@pytest.mark.isa
def test_adaround_on_the_trained_depthwise_net_beats_nearest(dw_onnx, tmp_path):
    rtn, ada, info, x, ref = _nearest_and("adaround", dw_onnx, tmp_path)
    assert info["weight_rounding"] == "adaround"
    assert info["weight_rounded_layers"] >= 4 and info["weight_output_error_ratio"] < 0.9
    assert f"AdaRound weight rounding ({info['weight_rounded_layers']} layers" in " ".join(techniques(info))
    a, b = _weights(rtn), _weights(ada)
    for name, (q_rtn, s_rtn) in a.items():
        np.testing.assert_array_equal(b[name][1], s_rtn)
        assert np.abs(b[name][0].astype(int) - q_rtn).max() <= 1  # up or down, never further
    mse = lambda p: float(np.mean((_out(p, x) - ref) ** 2))  # noqa: E731
    assert mse(ada) < mse(rtn), (mse(ada), mse(rtn))


def test_weight_rounding_in_a_recipe_and_its_report(hostile_dir, tmp_path):
    out = tmp_path / "g"
    res = CliRunner().invoke(cli, ["run", str(write_recipe(hostile_dir, "{weight_rounding: gptq}", name="gptq")),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    step = next(s for s in json.loads((out / "report.json").read_text())["steps"] if s["kind"] == "quantize")
    assert step["details"]["weight_rounded_layers"] == 3
    assert any(t.startswith("GPTQ weight rounding (3 layers") for t in step["details"]["techniques"])
    assert "GPTQ weight rounding" in (out / "report.md").read_text()


def test_weight_rounding_is_an_onnxruntime_static_setting(hostile_dir, tmp_path):
    for q, why in (("{engine: nncf, weight_rounding: gptq}", "apply to engine onnxruntime, not nncf"),
                   ("{mode: dynamic, weight_rounding: gptq}", "need mode: static")):
        res = CliRunner().invoke(cli, ["run", str(write_recipe(hostile_dir, q, name="bad")), "--out", str(tmp_path / "b")])
        assert res.exit_code == 2, res.output
        assert why in res.output and "Traceback" not in res.output
