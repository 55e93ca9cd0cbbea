"""A Conv left FP32 in a QDQ model runs FP32 in compressor's ONNX Runtime sessions: ORT's
WeightBiasQuantization would otherwise give it per-tensor INT8 weights at session start."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from compressor.data import load_split
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.steps.quantize.tuning import _OrtCandidate
from compressor.targets.onnxruntime_cpu import OrtSession, session_options
from tests.steps.quantize.test_depthwise_techniques import dw_onnx  # noqa: F401 - the trained depthwise net


def _optimized(model, options, out):
    so, disabled = session_options(1, options)
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or None)
    return {n.name: n.op_type for n in onnx.load(str(out)).graph.node}


def test_a_node_left_fp32_stays_fp32(dw_onnx, tmp_path):
    g = onnx.load(str(dw_onnx)).graph
    # the depthwise layer whose channel ranges were spread 1000x: per-tensor INT8 ruins it
    dw = next(n.name for n in g.node if n.op_type == "Conv"
              and any(a.name == "group" and a.i > 1 for a in n.attribute))
    qdq = tmp_path / "excluded.onnx"
    quantize_onnx(dw_onnx, qdq, QuantizeConfig(nodes_to_exclude=[dw]), load_split("digits", "train", 128, seed=1))
    # "extended": every QDQ fusion, without the NCHWc layout pass that renames the nodes
    ops = _optimized(qdq, {"graph_optimization_level": "extended"}, tmp_path / "kept.onnx")
    assert any(op == "QLinearConv" for op in ops.values())        # the other layers run INT8 ...
    assert ops[dw] == "Conv"                                      # ... the excluded one FP32
    trap = _optimized(qdq, {"graph_optimization_level": "extended", "keep_fp32_nodes": False},
                      tmp_path / "ort-default.onnx")
    assert trap[dw] == "QLinearConv"  # what ORT's default optimizers make of it (the reason for the option)

    # the same numbers as the model run without any graph optimization (exact Q/DQ simulation),
    # closer to FP32 than with ORT's re-quantized weight
    x = next(iter(load_split("digits", "test", 200, seed=0).inputs.values()))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    exact = ort.InferenceSession(str(qdq), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    ours = OrtSession(qdq, 1, {}).run({"input": x})[0]
    tuner = _OrtCandidate(qdq, 1).run({"input": x})[0]
    ort_default = OrtSession(qdq, 1, {"keep_fp32_nodes": False}).run({"input": x})[0]
    fp32 = OrtSession(dw_onnx, 1, {}).run({"input": x})[0]
    # the INT8 kernels round the requantization differently from the float Q/DQ simulation now
    # and then (one output step on a few samples): near-equal, not bit-equal
    assert float(np.mean(np.abs(ours - exact))) < 1e-3
    assert float(np.mean(ours.argmax(1) == exact.argmax(1))) >= 0.99
    np.testing.assert_allclose(tuner, ours, atol=1e-6)  # the tuner scores what the target runs
    err = lambda y: float(np.mean((y - fp32) ** 2))  # noqa: E731
    assert err(ours) < err(ort_default), (err(ours), err(ort_default))


def test_ort_mobile_converts_a_node_left_fp32_as_fp32(dw_onnx, tmp_path):
    # ORT's converter runs the default optimizers and offers no switch: the target wraps its sessions
    from compressor.targets.base import ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    g = onnx.load(str(dw_onnx)).graph
    dw = next(n.name for n in g.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    qdq = tmp_path / "excluded.onnx"
    quantize_onnx(dw_onnx, qdq, QuantizeConfig(nodes_to_exclude=[dw]), load_split("digits", "train", 128, seed=1))
    x = next(iter(load_split("digits", "test", 200, seed=0).inputs.values()))
    keep = OrtSession(qdq, 1, {}).run({"input": x})[0]
    trap = OrtSession(qdq, 1, {"keep_fp32_nodes": False}).run({"input": x})[0]
    assert float(np.abs(keep - trap).max()) > 1e-3  # the two differ on this model
    for style, keep_fp32, want in (("fixed", True, keep), ("runtime", True, keep), ("fixed", False, trap)):
        spec = load_target("ort-mobile").model_copy(update={"options": {"optimization_style": style,
                                                                        "keep_fp32_nodes": keep_fp32}})
        target = make_target(spec)
        art = target.compile(ModelArtifact(f"q-{style}-{keep_fp32}", "int8", qdq, []), tmp_path, precision="int8")
        got = target.load(art, threads=1).run({"input": x})[0]
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{style} keep_fp32_nodes={keep_fp32}")


def test_openvino_runs_a_node_left_fp32_as_fp32(dw_onnx, tmp_path):
    # OpenVINO needs no switch: its answer follows the kept FP32 node, not ORT's re-quantized weight
    from compressor.targets.base import ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    g = onnx.load(str(dw_onnx)).graph
    dw = next(n.name for n in g.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))
    qdq = tmp_path / "excluded.onnx"
    quantize_onnx(dw_onnx, qdq, QuantizeConfig(nodes_to_exclude=[dw]), load_split("digits", "train", 128, seed=1))
    x = next(iter(load_split("digits", "test", 200, seed=0).inputs.values()))
    keep = OrtSession(qdq, 1, {}).run({"input": x})[0]
    trap = OrtSession(qdq, 1, {"keep_fp32_nodes": False}).run({"input": x})[0]
    ov = make_target(load_target("openvino-cpu"))
    got = ov.load(ov.compile(ModelArtifact("q", "int8", qdq, []), tmp_path, precision="int8"), threads=1).run(
        {"input": x})[0]
    near, far = float(np.mean(np.abs(got - keep))), float(np.mean(np.abs(got - trap)))
    assert near < far, (near, far)
