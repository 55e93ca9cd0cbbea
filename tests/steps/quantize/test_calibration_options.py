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


@pytest.mark.parametrize("samples", [1, 31, 33, 500, 1000])
@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "moving_average"])
def test_any_calibration_count(mlp_onnx, tmp_path, samples, method):
    """ORT's histogram calibrators crashed unless samples % calibration_batch_size == 0."""
    import numpy as np
    import onnxruntime as ort

    calib = load_split("digits", "train", samples, seed=0)
    assert len(calib) == samples
    cfg = (QuantizeConfig(moving_average=True) if method == "moving_average"
           else QuantizeConfig(calibration=method))
    info = quantize_onnx(mlp_onnx, tmp_path / "q.onnx", cfg, calib)
    assert info["calibration_samples"] == samples
    used = info.get("calibration_batch_size_used", cfg.calibration_batch_size)
    if method != "minmax":  # equal batches: no sample dropped or repeated
        assert samples % used == 0 and used <= cfg.calibration_batch_size
    # the quantized model runs and stays close to the FP32 one
    x = next(iter(load_split("digits", "test", 64, seed=0).inputs.values()))
    ref = ort.InferenceSession(str(mlp_onnx)).run(None, {"input": x})[0]
    out = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"input": x})[0]
    agree = float((ref.argmax(1) == out.argmax(1)).mean())
    assert agree >= (0.5 if samples == 1 else 0.8), agree


def test_even_batch_size():
    from compressor.steps.quantize.onnxruntime_ptq import even_batch_size

    assert [even_batch_size(n, 32) for n in (1, 31, 33, 500, 512, 1000)] == [1, 31, 11, 25, 32, 25]
