"""Lossless GGUF re-encoding: a tiny GGUF written here (gguf's own quantizer; for the
K-quants, which it cannot quantize, random super-blocks) becomes MatMulNBits / OpenVINO
compressed weights whose values equal gguf's dequantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compressor.steps.weight_only.gguf import OFFSET_MID, dequantize_nbits, reencode_onnx, reencode_openvino

K, N, T = 96, 40, 5  # 3 blocks of 32 per row (odd: exercises the packed zero-point padding)
KQ = 512  # the K-quants' rows: two super-blocks of 256
KINDS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K"]
OFFSET_KINDS = ("Q4_1", "Q5_1", "Q4_K")


def _k(kind: str) -> int:
    return KQ if kind.endswith("_K") else K


def _random_k_blocks(kind: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Random Q4_K / Q6_K super-blocks [n, bytes per row] with small finite fp16 factors."""
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, size=(n, k // 256, size), dtype=np.uint8)
    f16 = lambda shape: (rng.uniform(1e-4, 2e-3, size=shape).astype(np.float16)  # noqa: E731
                         .view(np.uint8).reshape(*shape[:-1], 2))
    if kind == "Q4_K":  # d, dmin first
        raw[..., 0:2], raw[..., 2:4] = f16((n, k // 256, 1)), f16((n, k // 256, 1))
    else:  # Q6_K: d last
        raw[..., size - 2:] = f16((n, k // 256, 1))
    return raw.reshape(n, -1)


def _write_gguf(path: Path, kind: str, w: np.ndarray) -> np.ndarray:
    """Quantize ``w`` [N, K] to ``kind`` into a one-tensor GGUF; returns gguf's dequantization."""
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    if kind.endswith("_K"):
        data = _random_k_blocks(kind, w.shape[0], w.shape[1], np.random.default_rng(7))
    else:
        data = gguf.quants.quantize(w, qtype)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("blk.0.ffn_up.weight", data, raw_dtype=qtype)
    writer.add_tensor("blk.0.other.weight", np.ones((4, w.shape[1]), np.float32))  # a 2-D tensor in another type
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf.quants.dequantize(data, qtype)


def _matmul_model(path: Path, weights: dict[str, np.ndarray]) -> Path:
    """x [1, T, K] -> one MatMul per weight [K, N] (outputs y_<name>)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = next(iter(weights.values())).shape[0]
    nodes = [helper.make_node("MatMul", ["x", f"w_{n}"], [f"y_{n}"], name=n) for n in weights]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, k])],
                              [helper.make_tensor_value_info(f"y_{n}", TensorProto.FLOAT, None) for n in weights],
                              [numpy_helper.from_array(w, f"w_{n}") for n, w in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    return path


@pytest.fixture(params=KINDS)
def case(request, tmp_path):
    rng = np.random.default_rng(0)
    k = _k(request.param)
    w = (rng.standard_normal((N, k)) * 0.05 + 0.01).astype(np.float32)
    ref = _write_gguf(tmp_path / "tiny.gguf", request.param, w)
    perm = rng.permutation(N)  # the export's rows in another order (as Llama's q/k projections)
    weights = {"proj": np.ascontiguousarray(ref[perm].T), "free": rng.standard_normal((k, N)).astype(np.float32)}
    return request.param, tmp_path, ref[perm].T, weights


@pytest.mark.parametrize("kind", KINDS)
def test_block_grids_dequantize_as_gguf_does(kind):
    import gguf

    from compressor.steps.weight_only.gguf_blocks import _parse

    rng = np.random.default_rng(5)
    k = _k(kind)
    qtype = gguf.GGMLQuantizationType[kind]
    w = (rng.standard_normal((N, k)) * 0.05).astype(np.float32)
    raw = _random_k_blocks(kind, N, k, rng) if kind.endswith("_K") else gguf.quants.quantize(w, qtype)
    grid = _parse(kind, raw, N, k)
    assert grid.codes.max() < 2 ** {"Q4_0": 4, "Q4_1": 4, "Q4_K": 4, "Q5_0": 5, "Q5_1": 5, "Q6_K": 6}.get(kind, 8)
    assert np.array_equal(grid.dequantize(), gguf.quants.dequantize(raw, qtype))  # bit for bit


def test_onnxruntime_reencoding_is_bit_exact(case):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    kind, tmp, expect, weights = case
    src = _matmul_model(tmp / "fp32.onnx", weights)
    details = reencode_onnx(src, tmp / "q.onnx", tmp / "tiny.gguf", accuracy_level=0)
    assert details["exact_layers"] == 1 and details["kinds"] == {kind: 1}
    assert list(details["fp32_layers"]) == ["free"] and "blk.0.other.weight: F32" in details["fp32_layers"]["free"]
    model = onnx.load(str(tmp / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    attrs = {a.name: a.i for a in node.attribute}
    assert attrs["bits"] == (4 if kind in ("Q4_0", "Q4_1", "Q4_K") else 8)
    assert attrs["block_size"] == (16 if kind == "Q6_K" else 32)
    offset = inits.get("proj.gguf.offset")
    assert (offset is not None) == (kind in OFFSET_KINDS)
    k = _k(kind)
    got = dequantize_nbits(*(inits[x] for x in node.input[1:4]), k, N, attrs["bits"], offset, attrs["block_size"])
    assert np.array_equal(got, expect)  # the same float32 values as gguf's dequantization, bit for bit
    if kind in OFFSET_KINDS:  # codes centred on the middle of their range, the rest in the offset term
        zp = inits[node.input[3]]
        if attrs["bits"] == 4:  # two per byte, each row padded to whole bytes
            zp = np.stack([zp & 0x0F, zp >> 4], -1).reshape(N, -1)[:, :k // attrs["block_size"]]
        assert set(np.unique(zp).tolist()) == {OFFSET_MID[kind]}
    x = np.random.default_rng(1).standard_normal((1, T, k)).astype(np.float32)
    y = ort.InferenceSession(str(tmp / "q.onnx"), providers=["CPUExecutionProvider"]).run(["y_proj", "y_free"], {"x": x})
    np.testing.assert_allclose(y[0], x @ expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y[1], x @ weights["free"], rtol=1e-5, atol=1e-5)


def test_a_packed_projection_is_found_across_tensors_of_one_type(tmp_path):
    """A builder's q/k/v MatMul holds three GGUF tensors' rows side by side (q's reordered):
    one MatMulNBits, bit-exact. Rows from tensors of two types cannot share one MatMulNBits:
    that weight stays FP32 and is listed."""
    import gguf
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(4)
    writer = gguf.GGUFWriter(str(tmp_path / "qkv.gguf"), "llama")
    deq = {}
    for name, n, kind in (("attn_q", 40, "Q4_1"), ("attn_k", 16, "Q4_1"), ("attn_v", 16, "Q4_1"), ("ffn_x", 8, "Q8_0")):
        qtype = gguf.GGMLQuantizationType[kind]
        data = gguf.quants.quantize((rng.standard_normal((n, K)) * 0.05).astype(np.float32), qtype)
        writer.add_tensor(f"blk.0.{name}.weight", data, raw_dtype=qtype)
        deq[name] = gguf.quants.dequantize(data, qtype)
    for step in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file, writer.close):
        step()
    packed = np.concatenate([deq["attn_q"][rng.permutation(40)], deq["attn_k"], deq["attn_v"]])  # [72, K]
    mixed = np.concatenate([deq["attn_k"], deq["ffn_x"]])
    src = _matmul_model(tmp_path / "fp32.onnx", {"qkv": np.ascontiguousarray(packed.T), "mixed": np.ascontiguousarray(mixed.T)})
    details = reencode_onnx(src, tmp_path / "q.onnx", tmp_path / "qkv.gguf", accuracy_level=0)
    assert details["exact_layers"] == 1 and list(details["fp32_layers"]) == ["mixed"]
    assert details["layers"]["qkv"] == "blk.0.attn_q.weight + blk.0.attn_k.weight + blk.0.attn_v.weight (Q4_1)"
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    got = dequantize_nbits(*(inits[x] for x in node.input[1:4]), K, 72, 4, inits["qkv.gguf.offset"])
    assert np.array_equal(got, packed.T)


def test_onnxruntime_accepts_float_zero_points_for_q4_1(tmp_path):
    import onnxruntime as ort

    w = (np.random.default_rng(2).standard_normal((N, K)) * 0.05).astype(np.float32)
    expect = _write_gguf(tmp_path / "tiny.gguf", "Q4_1", w).T
    src = _matmul_model(tmp_path / "fp32.onnx", {"proj": np.ascontiguousarray(expect)})
    reencode_onnx(src, tmp_path / "q.onnx", tmp_path / "tiny.gguf", accuracy_level=0, offsets="float_zero_point")
    x = np.random.default_rng(3).standard_normal((1, T, K)).astype(np.float32)
    y = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ expect, rtol=1e-4, atol=1e-4)  # -m/d rounds in float: close, not bit-exact


def test_openvino_reencoding_keeps_the_codes(case):
    import openvino as ov

    kind, tmp, expect, weights = case
    src = _matmul_model(tmp / "fp32.onnx", weights)
    model, details = reencode_openvino(src, tmp / "tiny.gguf")
    assert details["exact_layers"] == 1 and len(details["fp32_layers"]) == 1  # "free" (OpenVINO names it by its output)
    types = {op.get_element_type().get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert {"Q8_0": "i8", "Q5_0": "u8", "Q5_1": "u8", "Q6_K": "u8"}.get(kind, "u4") in types
    x = np.random.default_rng(1).standard_normal((1, T, _k(kind))).astype(np.float32)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"})
    out = compiled({"x": x})
    y = {o.get_any_name(): v for o, v in out.items()}
    np.testing.assert_allclose(y["y_proj"], x @ expect, rtol=1e-4, atol=1e-4)


def test_recipe_rules_for_the_gguf_algorithm():
    from pydantic import ValidationError

    from compressor.recipe.schema import Recipe

    base = {"name": "g", "model": {"gguf": "m.gguf"}, "data": {"source": {"text": "t.txt"}},
            "targets": ["onnxruntime-cpu"], "steps": [{"weight_quantize": {"algorithm": "gguf"}}]}
    Recipe.model_validate(base)
    with pytest.raises(ValidationError, match="own grid: remove bits, group_size"):
        Recipe.model_validate({**base, "steps": [{"weight_quantize": {"algorithm": "gguf", "bits": 8, "group_size": 32}}]})
    with pytest.raises(ValidationError, match="model must be"):
        Recipe.model_validate({**base, "model": {"hf": "folder"}})


def test_a_gguf_without_kept_blocks_is_one_clear_error(tmp_path):
    import gguf

    from compressor.errors import StepError
    from compressor.steps.weight_only.gguf import reencode_step

    writer = gguf.GGUFWriter(str(tmp_path / "f32.gguf"), "llama")
    writer.add_tensor("blk.0.ffn_up.weight", np.ones((N, K), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    src = _matmul_model(tmp_path / "fp32.onnx", {"proj": np.ones((K, N), np.float32)})
    with pytest.raises(StepError, match="no Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q6_K tensor"):
        reencode_step("onnxruntime", src, tmp_path / "q.onnx", tmp_path / "f32.gguf")
    assert not (tmp_path / "q.onnx").exists()  # nothing half-written
