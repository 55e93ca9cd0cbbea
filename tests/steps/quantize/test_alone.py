"""A node quantized alone cut from the full QDQ model matches ORT's quantizer run with every other node excluded."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compressor.data import load_split
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.alone import AloneCutter
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.steps.quantize.tuning import quantized_nodes
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net


def _out(model, x):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.slow
def test_cut_matches_the_quantizer_node_by_node(dw_onnx, tmp_path):  # noqa: F811
    calib = load_split("digits", "train", 64, seed=1)
    x = next(iter(load_split("digits", "test", 100, seed=0).inputs.values())).astype(np.float32)
    cfg = QuantizeConfig(per_channel=True)
    cache = tmp_path / "calib.json"
    quantize_onnx(dw_onnx, tmp_path / "full.onnx", cfg, calib, calibration_cache=cache)
    nodes = quantized_nodes(tmp_path / "full.onnx")
    assert len(nodes) >= 5
    cutter = AloneCutter(onnx.load(str(dw_onnx)), onnx.load(str(tmp_path / "full.onnx")))
    fp32 = _out(dw_onnx, x)
    compared = 0
    for node in nodes:
        quantize_onnx(dw_onnx, tmp_path / "one.onnx", cfg, calib, calibration_cache=cache,
                      nodes_to_exclude=[n for n in nodes if n != node])
        ref, cut = _out(tmp_path / "one.onnx", x), _out(cutter.model(node), x)
        assert not np.allclose(cut, fp32, atol=1e-6), node  # the node really is quantized
        if np.array_equal(ref, fp32):
            continue  # ORT leaves some nodes (the pooling) FP32 when quantized alone; the cut keeps the full model's
        # the same error against FP32 as the quantizer's own quantize-alone model
        e_ref, e_cut = np.mean((ref - fp32) ** 2), np.mean((cut - fp32) ** 2)
        assert abs(e_cut - e_ref) <= 0.05 * e_ref, (node, e_ref, e_cut)
        compared += 1
    assert compared >= 4  # every Conv and the Gemm
