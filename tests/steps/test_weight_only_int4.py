"""weight_quantize's INT4 algorithms on a tiny random Llama (2 layers, hidden 64): HQQ on
the integer-zero-point kernels, NNCF AWQ / scale estimation / sensitivity ratio on the ONNX
model (ONNX Runtime) and GPTQ / ratio on OpenVINO, and the recipe rules around them."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from compressor.recipe.schema import WeightQuantizeConfig as W
from tests.llm_fixtures import tiny_llama_folder

LAYERS = 2


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from compressor.export.decoder import export_decoder
    from compressor.models.llm import load_hf_folder

    d = tmp_path_factory.mktemp("int4")
    return export_decoder(load_hf_folder(tiny_llama_folder(d / "model")).model, d / "decoder.onnx")


@pytest.fixture(scope="module")
def feeds():
    empty = {f"past_{kv}_{i}": np.zeros((1, 2, 0, 16), np.float32) for i in range(LAYERS) for kv in ("key", "value")}
    return [{"input_ids": np.arange(3 + 7 * i, 19 + 7 * i).reshape(1, -1), **empty} for i in range(4)]


def _logits(path, feed):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def _nbits(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return [(n, {a.name: a.i for a in n.attribute}, inits) for n in m.graph.node if n.op_type == "MatMulNBits"]


@pytest.mark.parametrize("bad,match", [
    ({"bits": 8, "awq": True}, "bits: 4 only"),
    ({"algorithm": "hqq", "scale_estimation": True}, "rtn or gptq"),
    ({"hqq_zero_points": "integer"}, "applies to algorithm hqq"),
    ({"algorithm": "hqq", "symmetric": True}, "asymmetric"),
    ({"sensitivity_metric": "weight_quantization_error"}, "ratio < 1"),
    ({"ratio": 0.8, "mixed": "edges"}, "not edges"),
    ({"algorithm": "gptq", "bits": 8}, "4 bits only"),
    ({"awq": True, "quantize_embedding": True}, "quantize_embedding"),
])
def test_invalid_combinations_are_one_clear_error(bad, match):
    with pytest.raises(ValidationError, match=match):
        W(**bad)


def test_hqq_blocksum_keeps_hqq_weights_on_integer_zero_points(tiny_onnx, feeds, tmp_path):
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

    out = {}
    for mode in ("float", "blocksum", "integer"):
        cfg = W(bits=4, group_size=32, symmetric=False, algorithm="hqq", hqq_zero_points=mode, accuracy_level=0)
        out[mode] = (quantize_matmul_nbits(tiny_onnx, tmp_path / f"{mode}.onnx", cfg, LAYERS),
                     _logits(tmp_path / f"{mode}.onnx", feeds[0]))
    d, _ = out["blocksum"]
    assert d["float_zero_point_layers"] == 14 and d["max_offset_term"] > 0
    for mode in ("blocksum", "integer"):  # the packed kernels' layout: uint8 zero points, accuracy_level set
        for node, attrs, inits in _nbits(tmp_path / f"{mode}.onnx"):
            assert inits[node.input[3]].dtype == np.uint8 and attrs.get("accuracy_level", 0) == 0
    assert any(inits[n.input[3]].dtype == np.float32 for n, _, inits in _nbits(tmp_path / "float.onnx"))
    ref = out["float"][1]
    # the offset term restores HQQ's float zero points: same function up to float rounding;
    # rounding them instead moves every weight of a block by up to half a step
    assert np.abs(out["blocksum"][1] - ref).max() < 1e-3 * np.abs(ref).max()
    assert np.abs(out["integer"][1] - ref).max() > 10 * np.abs(out["blocksum"][1] - ref).max()
    codes = {m: {n.name: inits[n.input[1]] for n, a, inits in _nbits(tmp_path / f"{m}.onnx") if a["bits"] == 4}
             for m in ("float", "integer")}
    assert any((codes["integer"][k] != codes["float"][k]).any() for k in codes["float"])  # re-rounded codes


def test_nncf_awq_scale_estimation_on_onnx_runtime(tiny_onnx, feeds, tmp_path):
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

    rtn = W(bits=4, group_size=32, symmetric=False)
    quantize_matmul_nbits(tiny_onnx, tmp_path / "rtn.onnx", rtn, LAYERS)
    d = quantize_matmul_nbits(tiny_onnx, tmp_path / "se.onnx", W(**{**rtn.model_dump(), "awq": True,
                                                                 "scale_estimation": True}), LAYERS, feeds)
    assert d["nncf_int4_layers"] == 14 and d["quantized_ops"] == {"MatMulNBits:4": 14, "MatMulNBits:8": 1}
    nodes = _nbits(tmp_path / "se.onnx")
    for node, attrs, inits in nodes:  # NNCF's one-per-byte zero points packed two per byte
        if attrs["bits"] == 4:
            groups = -(-attrs["K"] // attrs["block_size"])
            assert inits[node.input[3]].shape == (attrs["N"] * -(-groups // 2),) and attrs["accuracy_level"] == 4
    scales = {n.name.split("_")[0]: inits[n.input[2]] for n, a, inits in nodes if a["bits"] == 4}
    base = {n.name.split("_")[0]: inits[n.input[2]] for n, a, inits in _nbits(tmp_path / "rtn.onnx") if a["bits"] == 4}
    common = set(scales) & set(base)
    assert common and any(not np.allclose(scales[k].ravel(), base[k].ravel()) for k in common)  # fitted scales
    ref, q = _logits(tiny_onnx, feeds[1]), _logits(tmp_path / "se.onnx", feeds[1])
    assert float((q * ref).sum() / np.linalg.norm(q) / np.linalg.norm(ref)) > 0.95


def test_sensitivity_ratio_keeps_int8_layers_on_both_runtimes(tiny_onnx, feeds, tmp_path):
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino

    cfg = W(bits=4, group_size=32, ratio=0.5)
    d = quantize_matmul_nbits(tiny_onnx, tmp_path / "r.onnx", cfg, LAYERS, feeds)
    ops = d["quantized_ops"]
    assert d["sensitivity_metric"] == "hessian_input_activation"
    assert ops["MatMulNBits:4"] + ops["MatMulNBits:8"] == 15 and 1 < ops["MatMulNBits:8"] < 15
    ov = compress_openvino(tiny_onnx, tmp_path / "r.xml", cfg, LAYERS, feeds)
    assert 0 < ov["weight_constants"]["i4"] < 14 and ov["ratio"] == 0.5


def test_openvino_gptq_changes_the_int4_weights(tiny_onnx, feeds, tmp_path):
    import openvino as ov

    from compressor.steps.weight_only.openvino import compress_openvino

    def int4_codes(xml):
        m = ov.Core().read_model(str(xml))
        return sorted((c.get_data().astype(np.int8).ravel() for c in m.get_ops() if c.get_type_name() == "Constant"
                       and c.get_element_type().get_type_name() == "i4"), key=len)

    compress_openvino(tiny_onnx, tmp_path / "rtn.xml", W(bits=4, group_size=32), LAYERS)
    d = compress_openvino(tiny_onnx, tmp_path / "gptq.xml", W(bits=4, group_size=32, algorithm="gptq"), LAYERS,
                          feeds)
    assert d["algorithm"] == "gptq" and d["weight_constants"]["i4"] == 14
    rtn, gptq = int4_codes(tmp_path / "rtn.xml"), int4_codes(tmp_path / "gptq.xml")
    assert sum(a.size for a in rtn) == sum(a.size for a in gptq)
    changed = sum(int((a != b).sum()) for a, b in zip(rtn, gptq) if a.shape == b.shape)
    assert changed > 0  # GPTQ rounds some weights away from their nearest level


def test_gptq_needs_calibration_text(tiny_onnx, tmp_path):
    from compressor.errors import StepError
    from compressor.steps.weight_only.openvino import compress_openvino

    with pytest.raises(StepError, match="calibration text"):
        compress_openvino(tiny_onnx, tmp_path / "g.xml", W(bits=4, group_size=32, algorithm="gptq"), LAYERS, None)
    assert not (tmp_path / "g.xml").exists()


def test_openvino_hqq_runs_the_same_weights_as_onnx_runtime_hqq(tiny_onnx, feeds, tmp_path):
    """Both runtimes take onnxruntime's HQQ solution: OpenVINO keeps the float zero points
    in its compressed-weight subgraph, ONNX Runtime as MatMulNBits float zero points."""
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino
    from compressor.targets.openvino_cpu import OpenVinoSession

    cfg = W(bits=4, group_size=32, symmetric=False, algorithm="hqq", mixed="none")
    d = compress_openvino(tiny_onnx, tmp_path / "h.xml", cfg, LAYERS)
    assert d["hqq_layers"] == 15 and d["weight_constants"]["u4"] == 15  # every MatMul, the head too
    quantize_matmul_nbits(tiny_onnx, tmp_path / "h.onnx", W(**{**cfg.model_dump(), "hqq_zero_points": "float",
                                                               "accuracy_level": 0}), LAYERS)
    ov_out = OpenVinoSession(tmp_path / "h.xml", threads=1, precision_hint="f32").run(feeds[2])[0]
    ort_out = _logits(tmp_path / "h.onnx", feeds[2])
    fp32 = _logits(tiny_onnx, feeds[2])
    assert np.abs(ov_out - ort_out).max() < 0.1 * np.abs(ov_out - fp32).max()  # same weights, not just close to FP32
    head8 = compress_openvino(tiny_onnx, tmp_path / "h8.xml", W(bits=4, group_size=32, algorithm="hqq"), LAYERS)
    assert head8["hqq_layers"] == 14 and head8["int8_layers"] == ["logits"]


def test_onnx_runtime_gptq_runs_and_its_scale_search_changes_scales(tiny_onnx, feeds, tmp_path):
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

    base = {"bits": 4, "group_size": 32, "symmetric": False, "algorithm": "gptq"}
    plain = quantize_matmul_nbits(tiny_onnx, tmp_path / "g.onnx", W(**base), LAYERS, feeds)
    assert plain["quantized_ops"] == {"MatMulNBits:4": 14, "MatMulNBits:8": 1}
    quantize_matmul_nbits(tiny_onnx, tmp_path / "m.onnx", W(**base, scale_estimation=True), LAYERS, feeds)
    s1 = {n.name: inits[n.input[2]] for n, a, inits in _nbits(tmp_path / "g.onnx") if a["bits"] == 4}
    s2 = {n.name: inits[n.input[2]] for n, a, inits in _nbits(tmp_path / "m.onnx") if a["bits"] == 4}
    assert s1.keys() == s2.keys() and any(not np.allclose(s1[k], s2[k]) for k in s1)


def test_hqq_ratio_keeps_the_worst_fitting_layers_int8_on_both_runtimes(tiny_onnx, tmp_path):
    import onnx

    from compressor.steps.weight_only.hqq_mixed import hqq_relative_error
    from compressor.steps.weight_only.layers import weight_matmuls
    from compressor.steps.weight_only.onnxruntime import _weights, quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino

    # one layer put on a 4-bit grid per group of 32 (as a GGUF's Q4 layers are): HQQ fits it almost
    # exactly, so it must stay INT4 while the worst-fitting layers go to INT8
    model = onnx.load(str(tiny_onnx))
    weights = _weights(model, [n for n in weight_matmuls(model) if n != "lm_head"])
    name, w = next((n, w) for n, w in weights.items() if w.shape[0] % 32 == 0)
    g = w.T.reshape(w.shape[1], -1, 32)
    lo, step = g.min(-1, keepdims=True), (g.max(-1, keepdims=True) - g.min(-1, keepdims=True)) / 15
    on_grid = (np.round((g - lo) / step) * step + lo).reshape(w.shape[1], -1).T.astype(np.float32)
    init = next(i for i in model.graph.initializer
                if i.name == next(n for n in model.graph.node if n.name == name).input[1])
    init.CopyFrom(onnx.numpy_helper.from_array(on_grid, init.name))
    src = tmp_path / "grid.onnx"
    onnx.save(model, str(src))
    assert hqq_relative_error(on_grid.T, 32) < 0.1 * hqq_relative_error(w.T, 32)

    cfg = W(bits=4, group_size=32, algorithm="hqq", ratio=0.6)
    d = quantize_matmul_nbits(src, tmp_path / "r.onnx", cfg, LAYERS)
    chosen, errors = d["hqq_int8_layers"], d["hqq_errors"]
    assert d["sensitivity_metric"] == "hqq_reconstruction_error" and chosen and name not in chosen
    worst = max(errors, key=errors.get)
    assert worst in chosen  # worst first (a layer too big for the remaining budget may be passed over)
    assert sum(weights[n].size for n in chosen) <= 0.4 * sum(v.size for v in weights.values())
    assert d["quantized_ops"]["MatMulNBits:8"] == 1 + len(chosen)  # the head and the chosen layers
    ov = compress_openvino(src, tmp_path / "r.xml", cfg, LAYERS)
    assert ov["hqq_int8_layers"] and name not in ov["hqq_int8_layers"]
    assert ov["hqq_layers"] == 14 - len(ov["hqq_int8_layers"])


def test_hqq_ratio_needs_no_calibration_and_refuses_a_metric():
    assert W(bits=4, group_size=32, algorithm="hqq", ratio=0.8).ratio == 0.8
    with pytest.raises(ValidationError, match="HQQ's reconstruction error"):
        W(bits=4, group_size=32, algorithm="hqq", ratio=0.8, sensitivity_metric="weight_quantization_error")
