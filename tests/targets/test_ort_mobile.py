"""ort-mobile: .ort conversion with a required-operators config, run in onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from tests.targets.targets_fixtures import write_recipe

from compressor.errors import RecipeError
from compressor.pipeline import run_recipe
from compressor.recipe import load_recipe
from compressor.targets.base import Artifact, ModelArtifact
from compressor.targets.devices import detect_host
from compressor.targets.ort_mobile import OrtMobileTarget, read_operator_config
from compressor.targets.spec import load_target


@pytest.mark.slow
def test_ort_mobile_end_to_end(tmp_path, tt_model_dir):
    recipe = write_recipe(tmp_path, tt_model_dir, ["ort-mobile"])
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=tmp_path / "run")
    rows = {r.variant: r for r in report.results}
    assert set(rows) == {"baseline", "compressed"}
    for variant, r in rows.items():
        assert r.status == "ok", r.error
        assert r.artifact.endswith(f"{variant}.ort") and r.latency_ms.p50 > 0
        # U8S8 is accurate wherever INT8 dot products accumulate in 32 bits; on an x86 host
        # without VNNI the phone's format saturates in the host's kernels (hence the mark)
        if variant == "baseline" or detect_host().int8_dot or r.accuracy_kernels == "emulated-arm64":
            assert r.parity.passed, (variant, r.parity)
        assert r.device["target_platform"] == "arm" and r.device["format"] == "ort"
        config = tmp_path / "run" / "artifacts" / "ort-mobile" / f"{variant}.required_operators.config"
        assert read_operator_config(config) == r.device["required_operators"]
    int8_ops = {op for ops in rows["compressed"].device["required_operators"].values() for op in ops}
    assert "DequantizeLinear" in int8_ops or "QLinearConv" in int8_ops
    assert rows["baseline"].parity.max_abs_diff < 1e-4
    # the INT8 format is the phone's (targets/ort-mobile.yaml declares arm64-dotprod), and an
    # accuracy comes from the phone's kernels: ONNX Runtime's aarch64 build under qemu-aarch64 where
    # `make arm64-env` set it up, else this x86 host's kernels, and the report says which
    quant = rows["compressed"].device["quantization"]
    assert rows["compressed"].device["deploy"]["name"] == "arm64-dotprod"
    assert quant["settings"]["weight_type"] == "int8" and "arm64" in quant["reason"]
    from compressor.bench.arm64_env import unavailable_reason

    expected = ("device" if detect_host().arch == "arm64" else
                "emulated-arm64" if unavailable_reason() is None else "host")
    assert rows["compressed"].accuracy_kernels == expected
    if expected == "emulated-arm64":
        assert rows["compressed"].device["emulated_cpu"] == "cortex-a76"
        assert rows["baseline"].accuracy_kernels == "host"  # FP32 has no saturating kernel: host run kept
    md = (tmp_path / "run" / "report.md").read_text()
    # the FP32 baseline always ran on this host's kernels (marked), INT8 where `expected` says
    assert ("not the deploy device's" in md) == (detect_host().arch != "arm64")
    assert ("emulated arm64 (cortex-a76)" in md) == (expected == "emulated-arm64")


def conv_relu_onnx(path):
    """A Conv+Relu ONNX model (opset 17) with a fixed 1x1x8x8 input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


@pytest.mark.parametrize("platform,style", [("amd64", "fixed"), ("arm", "runtime")])
def test_ort_mobile_options(tmp_path, platform, style):
    """Other platform / style: converts, loads and matches the ONNX model's output."""
    import onnxruntime as ort

    onnx_path = conv_relu_onnx(tmp_path / "m.onnx")
    spec = load_target("ort-mobile").model_copy(update={"options": {"target_platform": platform,
                                                                    "optimization_style": style}})
    target = OrtMobileTarget(spec)
    art = target.compile(ModelArtifact("m", "fp32", onnx_path, []), tmp_path / "out", precision="fp32")
    assert art.path.suffix == ".ort" and (tmp_path / "out" / "m.required_operators.config").exists()
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype(np.float32)
    (out,) = target.load(art, threads=1).run({"x": x})
    (ref,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_ort_mobile_bad_options_and_foreign_artifact(tmp_path):
    spec = load_target("ort-mobile")
    with pytest.raises(RecipeError, match=r"options.target_platform: Input should be 'arm' or 'amd64'"):
        OrtMobileTarget(spec.model_copy(update={"options": {"target_platform": "riscv"}}))
    from compressor.errors import TargetFailed

    with pytest.raises(TargetFailed, match=r"loads ORT-format models \(.ort\), not m.xml"):
        OrtMobileTarget(spec).load(Artifact(tmp_path / "m.xml", "fp32"), threads=1)
