"""onnxruntime-cpu target options: disabled graph optimizers reach the real ORT session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from compressor.errors import RecipeError
from compressor.targets.onnxruntime_cpu import OrtSession, session_options
from compressor.targets.spec import load_target


def _residual_layer_norm(path: Path) -> Path:
    """x + skip -> LayerNormalization: the pattern ORT fuses into SkipLayerNormalization."""
    hidden = 16
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "skip"], ["sum"], name="add"),
         helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], name="ln", axis=-1, epsilon=1e-5)],
        "residual_ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, hidden]),
         helper.make_tensor_value_info("skip", TensorProto.FLOAT, [1, 8, hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, hidden])],
        [numpy_helper.from_array(np.linspace(0.5, 1.5, hidden, dtype=np.float32), "gamma"),
         numpy_helper.from_array(np.zeros(hidden, np.float32), "beta")],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _optimized_ops(model: Path, options: dict, out: Path) -> set[str]:
    so, disabled = session_options(1, options)
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or None)
    return {n.op_type for n in onnx.load(str(out)).graph.node}


def test_disabled_optimizers_reach_the_session(tmp_path):
    model = _residual_layer_norm(tmp_path / "m.onnx")
    assert "SkipLayerNormalization" in _optimized_ops(model, {}, tmp_path / "default.onnx")
    shipped = load_target("onnxruntime-cpu", None).options
    assert shipped["disabled_optimizers"] == ["SkipLayerNormFusion"]
    ops = _optimized_ops(model, shipped, tmp_path / "shipped.onnx")
    assert "SkipLayerNormalization" not in ops and "LayerNormalization" in ops
    # same outputs either way
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 8, 16), dtype=np.float32),
             "skip": np.random.default_rng(1).standard_normal((1, 8, 16), dtype=np.float32)}
    a = OrtSession(model, 1, {}).run(feeds)[0]
    b = OrtSession(model, 1, shipped).run(feeds)[0]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_disabled_optimizers_must_be_a_list_of_names(tmp_path):
    model = _residual_layer_norm(tmp_path / "m.onnx")
    with pytest.raises(RecipeError, match="options.disabled_optimizers: Input should be a valid list"):
        OrtSession(model, 1, {"disabled_optimizers": "SkipLayerNormFusion"})
