"""A deliberately VNNI-only expectation, for the ``isa`` pass (tests/isa.py) alone.

ONNX Runtime's U8S8 kernels give the exact integer result where the CPU accumulates byte
products in 32 bits (VNNI, AMX), and saturate pairs of products at 32767 without it
(VPMADDUBSW on AVX2). This test asserts the exact result, so it passes on a VNNI host and
must fail on the emulated AVX2 path; ``tests/test_isa_pass.py`` checks both. Its name does
not match ``test_*.py``: the main pass never collects it.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.isa

K, N = 64, 8
X_SCALE, W_SCALE, Y_SCALE = 1 / 255, 1 / 127, 0.5


def saturating_qdq_matmul() -> onnx.ModelProto:
    """x (float, in [0, 1]) -> Q/DQ uint8 -> MatMul with int8 weights of 127 -> Q/DQ uint8.
    Every pair of byte products is 255 * 127 * 2 = 64770: over a 16-bit sum's 32767."""
    inits = [
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "x_zp"),
        numpy_helper.from_array(np.full((K, N), 127, np.int8), "w_q"),
        numpy_helper.from_array(np.array(W_SCALE, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(Y_SCALE, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0, np.uint8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"]),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["y_f"]),
        helper.make_node("QuantizeLinear", ["y_f", "y_scale", "y_zp"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "saturating_qdq_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, N])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, level: ort.GraphOptimizationLevel, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_u8s8_kernels_give_the_exact_integer_result():
    model, x = saturating_qdq_matmul(), np.ones((4, K), np.float32)
    exact = _run(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL, x)    # float Q/DQ simulation
    fused = _run(model, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, x)     # QLinearMatMul, U8S8 kernels
    assert float(exact.max()) == 64.0
    np.testing.assert_allclose(fused, exact, atol=Y_SCALE)
