"""`compressor bench` on a device with only the runtime: torch must never be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# the stated exceptions of the runtime-no-torch import contract (pyproject.toml)
NEEDS_TORCH = {"executorch": "ExecuTorch's host runtime is torch",
               "tensorrt": "TensorRT I/O uses torch CUDA buffers"}


def _bench_targets() -> list:
    """Every target file, skipped where its runtime is missing here or needs torch by design."""
    from compressor.targets.registry import target_class
    from compressor.targets.spec import available_targets, load_target_file

    params = []
    for name, path in sorted(available_targets().items()):
        runtime = load_target_file(path).runtime
        reason = next((why for key, why in NEEDS_TORCH.items() if key in runtime), None)
        if reason is None:
            cls = target_class(runtime)
            reason = f"consumes {cls.consumes} models" if cls.consumes != "onnx" else cls.unavailable_reason()
        # ONNX Runtime is the fast, always-present case; the other runtimes run with the slow tests
        marks = [pytest.mark.skip(reason=reason)] if reason else [] if name == "onnxruntime-cpu" else [pytest.mark.slow]
        params.append(pytest.param(name, marks=marks))
    return params


def _tiny_onnx(path: Path) -> Path:
    """A real conv classifier for 1x8x8 inputs, built with onnx.helper (no torch)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((4 * 8 * 8, 10)).astype(np.float32) * 0.05, "fc")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)  # ORT 1.31 reads <= 13
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("target", _bench_targets())
def test_bench_runs_without_torch(tmp_path, target):
    from compressor.data import load_split

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    out = tmp_path / "bench.json"
    # real digits images as an .npz: an edge device has no scikit-learn (and scikit-learn's array-API
    # helpers trip over the None torch entry), so the data travels as a file
    digits = load_split("digits", "test", 64)
    data = tmp_path / "digits.npz"
    np.savez(data, x_test=digits.inputs["input"], y_test=digits.labels)
    code = (
        "import sys; sys.modules['torch'] = None\n"  # a None entry makes every `import torch` fail
        "from compressor.cli.main import main\n"
        f"main(['bench', {str(model)!r}, '--target', {target!r}, '--data', {str(data)!r}, '--samples', '64', '--warmup', '2',"
        f" '--iterations', '30', '--min-duration', '0.05', '--out', {str(out)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["results"][0]["target"] == target
    assert report["recipe"] == "bench:tiny.onnx" and report["environment"]["cpu"]
    assert "onnxruntime" in report["environment"]["runtimes"]
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    (res,) = report["results"]
    expected = make_target(load_target(target)).precision_for("fp32")  # e.g. bf16 on openvino-cpu-bf16
    assert res["status"] == "ok" and res["precision"] == expected and res["device"]
    assert res["accuracy"]["samples"] == 64 and res["latency_ms"]["n"] >= 30
    samples = json.loads((tmp_path / res["latency_samples"]).read_text())
    assert len(samples) == res["latency_ms"]["n"]
