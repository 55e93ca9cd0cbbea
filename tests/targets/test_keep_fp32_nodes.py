"""A Conv left FP32 in a QDQ model runs FP32 in compressor's ONNX Runtime sessions: ORT's
WeightBiasQuantization would otherwise give it per-tensor INT8 weights at session start.

The models are quantized with the settings the host's device wants (as `compressor run`
does), and the INT8 kernels are compared with ONNX Runtime's float Q/DQ simulation
(no graph optimization), which is the same on every CPU: U8S8 kernels saturate without
VNNI, so comparing a U8S8 model's kernels with the simulation holds on VNNI hosts only
(issue #20). Marked ``isa``: run again on the AVX2 kernel path (tests/isa.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from compressor.data import load_split
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.steps.quantize.tuning import _OrtCandidate
from compressor.targets.devices import detect_host
from compressor.targets.onnxruntime_cpu import OrtSession, session_options
from compressor.targets.quant_defaults import device_defaults
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net


def _optimized(model, options, out):
    so, disabled = session_options(1, options)
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or None)
    return {n.name: n.op_type for n in onnx.load(str(out)).graph.node}


def _depthwise(model: Path) -> str:
    # the depthwise layer whose channel ranges were spread 1000x: per-tensor INT8 ruins it
    g = onnx.load(str(model)).graph
    return next(n.name for n in g.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute))


def _excluded(dw_onnx: Path, runtime: str, out: Path) -> tuple[Path, str]:
    """The depthwise net quantized for ``runtime`` on this host's device, the depthwise conv left FP32."""
    dw = _depthwise(dw_onnx)
    settings = device_defaults(runtime, detect_host()).settings
    quantize_onnx(dw_onnx, out, QuantizeConfig(nodes_to_exclude=[dw], **settings),
                  load_split("digits", "train", 128, seed=1))
    return out, dw


def _simulated(model: Path, x: np.ndarray) -> np.ndarray:
    """ORT with no graph optimization: Q/DQ in float, the same numbers on every CPU."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _digits() -> np.ndarray:
    return next(iter(load_split("digits", "test", 200, seed=0).inputs.values()))


@pytest.mark.isa
def test_a_node_left_fp32_stays_fp32(dw_onnx, tmp_path):
    qdq, dw = _excluded(dw_onnx, "onnxruntime", tmp_path / "excluded.onnx")
    # "extended": every QDQ fusion, without the NCHWc layout pass that renames the nodes
    ops = _optimized(qdq, {"graph_optimization_level": "extended"}, tmp_path / "kept.onnx")
    assert any(op == "QLinearConv" for op in ops.values())        # the other layers run INT8 ...
    assert ops[dw] == "Conv"                                      # ... the excluded one FP32
    trap = _optimized(qdq, {"graph_optimization_level": "extended", "keep_fp32_nodes": False},
                      tmp_path / "ort-default.onnx")
    assert trap[dw] == "QLinearConv"  # what ORT's default optimizers make of it (the reason for the option)

    # ORT's kernels give the Q/DQ simulation of the model as written (the node FP32), not that
    # of the model ORT's default optimizers make (the node's weight re-quantized per tensor)
    x = _digits()
    _optimized(qdq, {"graph_optimization_level": "basic", "keep_fp32_nodes": False}, tmp_path / "requant.onnx")
    exact, requantized = _simulated(qdq, x), _simulated(tmp_path / "requant.onnx", x)
    ours = OrtSession(qdq, 1, {}).run({"input": x})[0]
    tuner = _OrtCandidate(qdq, 1).run({"input": x})[0]
    ort_default = OrtSession(qdq, 1, {"keep_fp32_nodes": False}).run({"input": x})[0]
    gap = float(np.mean(np.abs(exact - requantized)))
    assert gap > 1e-2, gap  # the two readings of the model differ on this net
    # the INT8 kernels round the requantization differently from the float Q/DQ simulation now
    # and then (one output step on a few samples): near-equal, not bit-equal
    assert float(np.mean(np.abs(ours - exact))) < 1e-3
    assert float(np.mean(ours.argmax(1) == exact.argmax(1))) >= 0.99
    assert float(np.mean(np.abs(ort_default - requantized))) < 1e-3 < gap  # ORT's default: the other reading
    np.testing.assert_allclose(tuner, ours, atol=1e-6)  # the tuner scores what the target runs


def test_keeping_the_node_fp32_is_closer_to_fp32_than_ort_requantization(dw_onnx, tmp_path):
    # why the option matters, on the Q/DQ simulation (the same on every CPU): with U8S8 per channel,
    # the depthwise conv kept FP32 lands closer to the FP32 model than ORT's per-tensor re-quantization
    dw = _depthwise(dw_onnx)
    qdq = tmp_path / "u8s8.onnx"
    quantize_onnx(dw_onnx, qdq, QuantizeConfig(nodes_to_exclude=[dw], activation_type="uint8", weight_type="int8",
                                               per_channel=True), load_split("digits", "train", 128, seed=1))
    _optimized(qdq, {"graph_optimization_level": "basic", "keep_fp32_nodes": False}, tmp_path / "requant.onnx")
    x = _digits()
    fp32 = _simulated(dw_onnx, x)
    err = lambda y: float(np.mean((y - fp32) ** 2))  # noqa: E731
    kept, requantized = err(_simulated(qdq, x)), err(_simulated(tmp_path / "requant.onnx", x))
    assert kept < 0.8 * requantized, (kept, requantized)


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


@pytest.mark.isa
def test_openvino_runs_a_node_left_fp32_as_fp32(dw_onnx, tmp_path):
    # OpenVINO needs no switch: its answer follows the kept FP32 node, not ORT's re-quantized weight.
    # Both references are float Q/DQ simulations (the same on every CPU): the model as written,
    # and the model after ORT's basic-level optimizers gave the FP32 node per-tensor INT8 weights
    from compressor.targets.base import ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    qdq, dw = _excluded(dw_onnx, "openvino", tmp_path / "excluded.onnx")
    requantized = _optimized(qdq, {"graph_optimization_level": "basic", "keep_fp32_nodes": False},
                             tmp_path / "ort-default.onnx")
    assert requantized[dw] == "Conv"  # basic level: Q/DQ inserted on its weight, no fusion yet
    x = _digits()
    keep, trap = _simulated(qdq, x), _simulated(tmp_path / "ort-default.onnx", x)
    assert float(np.abs(keep - trap).max()) > 1e-3  # the two differ on this model
    ov = make_target(load_target("openvino-cpu"))
    got = ov.load(ov.compile(ModelArtifact("q", "int8", qdq, []), tmp_path, precision="int8"), threads=1).run(
        {"input": x})[0]
    near, far = float(np.mean(np.abs(got - keep))), float(np.mean(np.abs(got - trap)))
    assert near < far, (near, far)
