"""Cross-layer equalization and bias correction on a real (trained) depthwise CNN."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compressor.data import load_split
from compressor.recipe.schema import QuantizeConfig
from compressor.techniques.equalization import equalize, find_pairs
from tests.depthwise_fixtures import dw_onnx, int8_error  # noqa: F401 - the trained depthwise net


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_equalization_keeps_the_function_and_evens_the_ranges(dw_onnx, tmp_path):
    calib = load_split("digits", "train", 128, seed=0)
    model = onnx.load(str(dw_onnx))
    pairs = find_pairs(model)
    kinds = sorted((p["act"] or "none", p["depthwise_b"]) for p in pairs)
    assert ("clip", True) in kinds and ("relu", True) in kinds and ("clip", False) in kinds, kinds
    feeds = [{"input": f["input"] if "input" in f else next(iter(f.values()))} for f, _ in calib.batches(32)]
    dw_name = next(p["b"].input[1] for p in pairs if p["depthwise_b"] and p["act"] == "clip")
    spread = lambda m: (lambda w: w.max() / max(w.min(), 1e-12))(  # noqa: E731
        np.abs(onnx.numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == dw_name))).reshape(16, -1).max(1))
    before = spread(model)
    info = equalize(model, feeds)
    assert info["equalized_pairs"] == len(pairs) and info["equalized_through_relu6"] >= 2
    assert spread(model) < before / 3  # the depthwise channel ranges came much closer
    out = tmp_path / "eq.onnx"
    onnx.save(model, str(out))
    # exact where the ReLU6 statistics were measured (the clip is inactive before and after) ...
    xc = next(iter(calib.inputs.values()))
    np.testing.assert_allclose(_run(out, xc), _run(dw_onnx, xc), rtol=1e-3, atol=1e-3)
    # ... and on unseen data, where a channel may exceed its calibrated maximum, the same answers
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))
    assert (_run(out, x).argmax(1) == _run(dw_onnx, x).argmax(1)).mean() >= 0.99


@pytest.mark.isa  # the errors are measured on the INT8 kernels (U8S8 saturates without VNNI)
def test_equalization_and_bias_correction_reduce_the_int8_error(dw_onnx, tmp_path):
    calib = load_split("digits", "train", 200, seed=0)
    x = next(iter(load_split("digits", "test", 300, seed=0).inputs.values()))

    def err(**kw) -> tuple[float, dict]:
        return int8_error(dw_onnx, tmp_path, calib, x, per_channel=False, **kw)

    plain, _ = err()
    eq, info = err(equalization=True)
    assert info["equalized_pairs"] >= 3 and eq < plain * 0.8, (plain, eq, info)
    bc, info = err(bias_correction="fast")
    assert info["bias_corrected_layers"] >= 3 and bc < plain * 0.8, (plain, bc)
    full, info = err(equalization=True, bias_correction="full")
    assert info["bias_passes"] == 1 and info["bias_corrected_layers"] >= 3
    assert full < plain * 0.8, (plain, full)


def test_tuner_variants_cheapest_first_and_only_where_they_apply():
    from compressor.steps.quantize.accuracy_aware import _applicable, calibration_variants

    def tried(cfg):
        return [v for v in calibration_variants() if _applicable(cfg, v)]

    u8s8 = tried(QuantizeConfig())
    assert {"activation_type": "uint8", "weight_type": "uint8"} in u8s8 and {"reduce_range": True} in u8s8
    # the techniques come after the free format changes, and both together last
    keys = [set(v) for v in u8s8]
    assert keys.index({"bias_correction"}) > keys.index({"reduce_range"})
    # U8U8 last: without a VNNI kernel for it, it is slow where U8S8 is not
    assert keys[-1] == {"activation_type", "weight_type"}
    # GPTQ rounding (a pass over the calibration data per layer) after the cheaper techniques, then
    # three together, and all four just before U8U8
    assert keys.index({"weight_rounding"}) > keys.index({"equalization", "bias_correction"})
    assert keys.index({"activation_smoothing"}) < keys.index({"weight_rounding"})
    assert keys[-3] == {"equalization", "bias_correction", "weight_rounding"}
    assert keys[-2] == {"equalization", "activation_smoothing", "bias_correction", "weight_rounding"}
    # S8/S8 symmetric (TensorRT's form): the activation/weight types are not tuned away
    assert all("weight_type" not in v for v in tried(QuantizeConfig(activation_type="int8", symmetric_activations=True)))
    assert tried(QuantizeConfig(mode="dynamic")) == [{"per_channel": False}, {"reduce_range": True}]


@pytest.mark.parametrize("q, message", [
    ("{engine: nncf, bias_correction: fast}", "use nncf.bias_correction"),
    ("{engine: inc, equalization: true}", "apply to engine onnxruntime, not inc"),
    ("{mode: dynamic, bias_correction: full}", "need mode: static"),
])
def test_techniques_never_ignored_silently(cli, write_recipe, q, message):
    res = cli("validate", write_recipe(replace={"{mode: static, calibration: minmax}": q}))
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
