"""ORT calibration options: moving-average min/max (tighter activation ranges)."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import numpy_helper

from compressor.data import load_split
from compressor.errors import StepError
from compressor.export.onnx_export import export_onnx
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)).eval()
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    return export_onnx(model, path, [{"name": "input", "shape": [2, 1, 8, 8], "dtype": "float32", "dynamic": {}}])


def _activation_scales(path) -> dict[str, float]:
    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return {n.input[0]: float(init[n.input[1]]) for n in g.node
            if n.op_type == "QuantizeLinear" and init.get(n.input[1]) is not None and init[n.input[1]].size == 1}


def test_moving_average_tightens_activation_ranges(mlp_onnx, tmp_path):
    calib = load_split("digits", "train", 64, seed=0)
    plain, avg = tmp_path / "plain.onnx", tmp_path / "avg.onnx"
    quantize_onnx(mlp_onnx, plain, QuantizeConfig(calibration_batch_size=1), calib)
    info = quantize_onnx(mlp_onnx, avg, QuantizeConfig(moving_average=True, calibration_batch_size=1), calib)
    assert info["moving_average"] is True and info["calibration_batch_size"] == 1
    a, b = _activation_scales(plain), _activation_scales(avg)
    shared = sorted(set(a) & set(b))
    assert shared
    # averaged per-sample extremes never exceed the global extremes, and are tighter somewhere
    assert all(b[k] <= a[k] * (1 + 1e-6) for k in shared)
    assert any(b[k] < a[k] * 0.99 for k in shared)


def test_moving_average_needs_minmax(mlp_onnx, tmp_path):
    calib = load_split("digits", "train", 16, seed=0)
    with pytest.raises(StepError, match="moving_average"):
        quantize_onnx(mlp_onnx, tmp_path / "p.onnx", QuantizeConfig(calibration="percentile", moving_average=True), calib)
    assert not (tmp_path / "p.onnx").exists()
