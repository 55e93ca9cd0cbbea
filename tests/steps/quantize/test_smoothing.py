"""Activation smoothing of Conv streams (compressor/techniques/activation_smoothing.py) on a trained residual
CNN whose stream channels span very different ranges, as MobileNetV2's do."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from compressor.data import load_split
from compressor.export.onnx_export import export_onnx
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.step import techniques as report_words
from compressor.techniques.activation_smoothing import find_streams, smooth
from tests.depthwise_fixtures import dw_onnx, int8_error  # noqa: F401 - the trained depthwise net (ReLU6 pairs)


class ResidualNet(nn.Module):
    """stem -> projection (the stream) -> [expand -> ReLU -> project] + stream -> expand -> pool -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1))
        self.block = nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 8, 1))
        self.head = nn.Sequential(nn.Conv2d(8, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(32, 10))

    def forward(self, x):
        s = self.stem(x)
        return self.head(s + self.block(s))


@pytest.fixture(scope="module")
def residual_onnx(tmp_path_factory):
    torch.manual_seed(0)
    train = load_split("digits", "train", None, seed=0)
    x = torch.from_numpy(next(iter(train.inputs.values()))).double()
    y = torch.from_numpy(train.labels).long()
    model = ResidualNet().double()
    with torch.no_grad():  # stream channels 1000x apart, written by both projections alike
        gain = torch.logspace(-1.5, 1.5, 8, dtype=torch.float64)
        for conv in (model.stem[2], model.block[2]):
            conv.weight.mul_(gain.view(8, 1, 1, 1))
            conv.bias.mul_(gain)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return export_onnx(model.float().eval(), tmp_path_factory.mktemp("smooth") / "res.onnx",
                       [{"name": "input", "shape": [2, 1, 8, 8], "dtype": "float32", "dynamic": {}}])


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_the_stream_is_found_and_smoothing_keeps_the_function(residual_onnx, tmp_path):
    model = onnx.load(str(residual_onnx))
    streams = find_streams(model)
    # one stream: the stem's projection, the block's projection and their sum; both projections
    # write it, the block's expansion and the head's expansion read it
    assert len(streams) == 1, [sorted(s.tensors) for s in streams]
    s = streams[0]
    assert len(s.tensors) == 3 and len(s.producers) == 2 and len(s.consumers) == 2
    assert {n.op_type for n in s.producers + s.consumers} == {"Conv"}
    calib = next(iter(load_split("digits", "train", 128, seed=0).inputs.values()))
    info = smooth(model, [{"input": calib}], 0.6)
    assert info["smoothed_streams"] == 1 and info["smoothed_tensors"] == 3
    assert info["smoothed_pairs"] == 2 and info["smoothed_through_relu6"] == 0  # stem and block, through ReLU
    assert info["stream_range_spread"] > 4  # the largest channel range is several times the median one
    out = tmp_path / "smoothed.onnx"
    onnx.save(model, str(out))
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))
    ref = _run(residual_onnx, x)
    np.testing.assert_allclose(_run(out, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_smoothing_reduces_the_int8_error_of_the_stream(residual_onnx, tmp_path):
    calib = load_split("digits", "train", 200, seed=0)
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))

    def err(**kw) -> tuple[float, dict]:
        # reduce_range: 7-bit weights, so no CPU's U8S8 kernel saturates and the errors compared are
        # the rounding's alone, the same on AVX2, VNNI and AMX machines
        return int8_error(residual_onnx, tmp_path, calib, x, reduce_range=True, **kw)

    plain, _ = err()
    smoothed, info = err(activation_smoothing=0.6)
    assert info["smoothed_streams"] == 1 and smoothed < plain * 0.5, (plain, smoothed)
    assert ("activation smoothing (alpha 0.6, 1 Conv streams of 3 tensors, 2 Conv pairs through an activation, "
            "0 of them ReLU6)") in report_words(info)


def test_a_model_without_conv_streams_is_left_alone_and_says_so(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    # Conv -> Relu -> graph output: the only Conv output is read by a Relu, so nothing can move
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
                              "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert find_streams(model) == []
    info = smooth(model, [{"input": np.ones((1, 1, 2, 2), np.float32)}], 0.5)
    assert info["smoothed_streams"] == 0
    assert "activation smoothing (alpha 0.5): no Conv stream or pair to smooth" in report_words(
        {**info, "activation_smoothing": 0.5})


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_alpha_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="activation_smoothing"):
        QuantizeConfig(activation_smoothing=value)


def test_pairs_through_relu6_stay_under_the_clip(dw_onnx, tmp_path):
    """ReLU6 pairs follow cross-layer equalization's rule: channels the clip bites on keep their scale,
    the others stay under it on the calibration data, where the function is then unchanged."""
    dw = dw_onnx
    model = onnx.load(str(dw))
    calib = next(iter(load_split("digits", "train", 128, seed=0).inputs.values()))
    info = smooth(model, [{"input": calib}], 0.6)
    assert info["smoothed_streams"] == 0 and info["smoothed_through_relu6"] >= 2 and info["smoothed_pairs"] >= 3
    out = tmp_path / "smoothed.onnx"
    onnx.save(model, str(out))
    np.testing.assert_allclose(_run(out, calib), _run(dw, calib), rtol=1e-3, atol=1e-3)
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))
    assert (_run(out, x).argmax(1) == _run(dw, x).argmax(1)).mean() >= 0.99
