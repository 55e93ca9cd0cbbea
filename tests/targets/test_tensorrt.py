"""TensorRT: the target where TensorRT exists (skipped with the reason here), the
CPU-side trt-ready check on good and bad QDQ graphs, and per-target INT8 variants."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from tests.targets.targets_fixtures import write_recipe

from compressor.cli.main import _register, cli
from compressor.data.dataset import Dataset
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.targets.spec import load_target
from compressor.targets.tensorrt_gpu import TensorRtTarget
from compressor.targets.trt_check import check_trt_ready

TRT_REASON = TensorRtTarget.unavailable_reason()


def small_cnn(path):
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm(transB=1), opset 17, dynamic batch."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
             for n, s in [("cw", (8, 1, 3, 3)), ("cb", (8,)), ("fw", (10, 8)), ("fb", (10,))]]
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def quantized(tmp_path, name, **cfg):
    calib = Dataset({"x": np.random.default_rng(1).standard_normal((32, 1, 8, 8)).astype(np.float32)})
    src = small_cnn(tmp_path / "fp32.onnx")
    dst = tmp_path / f"{name}.onnx"
    quantize_onnx(src, dst, QuantizeConfig(**cfg), calib)
    return dst


TRT_CFG = dict(activation_type="int8", weight_type="int8", symmetric_activations=True, symmetric_weights=True,
               per_channel=True, quantize_bias=False)


@pytest.fixture(scope="module")
def s8s8(tmp_path_factory):
    """The small CNN quantized the way the tensorrt target asks (S8/S8 symmetric, float bias)."""
    return quantized(tmp_path_factory.mktemp("s8s8"), "s8s8", **TRT_CFG)


@pytest.fixture(scope="module")
def u8s8(tmp_path_factory):
    """The small CNN quantized with ORT's CPU settings (U8 activations, INT32 bias)."""
    return quantized(tmp_path_factory.mktemp("u8s8"), "u8s8", activation_type="uint8", weight_type="int8",
                     per_channel=True)


def test_trt_check_accepts_signed_symmetric_qdq(s8s8):
    result = check_trt_ready(s8s8)
    assert result.ok, result.problems
    assert result.qdq_nodes >= 6 and result.opset >= 13


def test_trt_check_rejects_u8_activations_with_zero_points(u8s8):
    result = check_trt_ready(u8s8)
    assert not result.ok
    assert any("zero point is UINT8" in p for p in result.problems)
    assert any("is not 0" in p for p in result.problems)  # asymmetric U8 activations
    assert any("INT32-quantized bias" in p for p in result.problems)  # ORT's default quantize_bias


def test_trt_check_rejects_nonzero_int8_zero_point_and_wrong_axis(tmp_path, s8s8):
    model = onnx.load(str(s8s8))
    dq_w = next(n for n in model.graph.node if n.op_type == "DequantizeLinear"
                and any(i.name == n.input[0] for i in model.graph.initializer) and "cw" in n.input[0])
    for a in dq_w.attribute:
        if a.name == "axis":
            a.i = 1  # Conv weights are per output channel: axis 0
    zp = next(i for i in model.graph.initializer if i.name == dq_w.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zp).shape, 3, np.int8), zp.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    problems = check_trt_ready(bad).problems
    assert any("zero point [3] is not 0" in p for p in problems)
    assert any("per-channel axis 1 for Conv" in p and "output-channel axis is 0" in p for p in problems)


def test_trt_check_flags_old_opset_fp32_and_unsupported_ops(tmp_path):
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("FusedConv", ["r"], ["y"], domain="com.microsoft")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid("", 11), helper.make_opsetid("com.microsoft", 1)], ir_version=7)
    onnx.save(model, str(tmp_path / "m.onnx"))
    problems = check_trt_ready(tmp_path / "m.onnx").problems
    assert any(p.startswith("opset 11 < 13") for p in problems)
    assert any("com.microsoft::FusedConv" in p for p in problems)
    assert any("no QuantizeLinear/DequantizeLinear" in p for p in problems)


def test_trt_check_cli(tmp_path, s8s8, u8s8):
    _register()
    runner = CliRunner()
    good = runner.invoke(cli, ["targets", "trt-check", str(s8s8)])
    assert good.exit_code == 0 and "trt-ready" in good.output and "NOT" not in good.output
    bad = runner.invoke(cli, ["targets", "trt-check", "--json", str(u8s8)])
    assert bad.exit_code == 1 and json.loads(bad.output)["ok"] is False
    missing = runner.invoke(cli, ["targets", "trt-check", str(tmp_path / "nope.onnx")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_recipe_makes_a_differently_quantized_model_per_target(tmp_path, tt_model_dir):
    """onnxruntime-cpu gets U8/S8, tensorrt gets S8/S8 symmetric; TensorRT itself then fails as unavailable."""
    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe

    recipe = write_recipe(tmp_path, tt_model_dir, ["onnxruntime-cpu", "tensorrt"])
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=tmp_path / "run")
    quant = {tuple(s["details"]["targets"]): s for s in report.steps if s["kind"] == "quantize"}
    assert set(quant) == {("onnxruntime-cpu",), ("tensorrt",)}
    arts = tmp_path / "run" / "artifacts"
    models = {t[0]: onnx.load(str(arts / f"{s['name']}.onnx")) for t, s in quant.items()}

    def zero_points(model):
        inits = {i.name: i for i in model.graph.initializer}
        return [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]

    ort_zps, trt_zps = zero_points(models["onnxruntime-cpu"]), zero_points(models["tensorrt"])
    assert ort_zps and trt_zps
    assert {z.data_type for z in ort_zps} == {TensorProto.UINT8}
    assert {z.data_type for z in trt_zps} == {TensorProto.INT8}
    assert all(not numpy_helper.to_array(z).any() for z in trt_zps)
    assert check_trt_ready(arts / f"{quant[('tensorrt',)]['name']}.onnx").ok
    rows = {(r.variant, r.target): r for r in report.results}
    assert rows["compressed", "onnxruntime-cpu"].status == "ok"
    if TRT_REASON is not None:
        trt = rows["compressed", "tensorrt"]
        assert trt.status == "failed" and trt.error == f"unavailable: {TRT_REASON}"


def test_tensorrt_unavailable_reason_names_the_fix():
    if TRT_REASON is None:
        pytest.skip("TensorRT is installed here")
    assert TRT_REASON == "tensorrt is not installed (pip install tensorrt on a machine with an NVIDIA GPU and CUDA)"


@pytest.mark.tensorrt
@pytest.mark.skipif(TRT_REASON is not None, reason=f"unavailable: {TRT_REASON}")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tensorrt_engine_end_to_end(tmp_path, s8s8, precision):
    from compressor.targets.base import ModelArtifact

    src = s8s8 if precision == "int8" else small_cnn(tmp_path / "fp32.onnx")
    target = TensorRtTarget(load_target("tensorrt"))
    art = target.compile(ModelArtifact("m", precision, src, []), tmp_path / "out", precision=precision)
    session = target.load(art, threads=1)
    x = np.random.default_rng(2).standard_normal((4, 1, 8, 8)).astype(np.float32)
    import onnxruntime as ort

    (ref,) = ort.InferenceSession(str(small_cnn(tmp_path / "ref.onnx"))).run(None, {"x": x})
    (out,) = session.run({"x": x})
    assert out.shape == ref.shape and np.mean(out.argmax(1) == ref.argmax(1)) >= 0.75
    assert session.last_gpu_ms > 0
