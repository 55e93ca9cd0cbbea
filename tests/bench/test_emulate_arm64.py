"""Accuracy on an arm64 phone's INT8 kernels, on an x86 host: ONNX Runtime's aarch64 build under
qemu-aarch64 (compressor/bench/arm64_env.py, `make arm64-env`).

The quickstart CNN quantized U8 activations x S8 weights (what `ort-mobile`'s arm64 device
takes) loses accuracy on x86 AVX2 kernels, whose 16-bit pair sums saturate; arm64 kernels
accumulate in 32 bits. The AVX2 side runs under qemu's Haswell model on every x86 host (on an
AVX2-only host that is also its native path), so both assertions hold on every x86 CPU."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.bench import arm64_env
from compressor.errors import BackendUnavailable
from compressor.targets.registry import make_target
from compressor.targets.spec import load_target

ROOT = Path(__file__).resolve().parents[2]


def _arm64_env() -> arm64_env.Arm64Env:
    """The set-up arm64 runtime (set up here if `make` has not), or skip with the reason."""
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-aarch64 is not installed (Debian's qemu-user; make installs it when run as root)")
    try:
        return arm64_env.setup(log=lambda m: None)
    except BackendUnavailable as e:
        pytest.skip(f"the arm64 runtime cannot be set up here: {e}")


def test_cpuinfo_follows_the_qemu_model():
    a76 = arm64_env.cpuinfo("cortex-a76", 2)
    assert a76.count("processor\t:") == 2 and "asimddp" in a76 and "0xd0b" in a76
    assert "asimddp" not in arm64_env.cpuinfo("cortex-a53", 1)
    assert "i8mm" in arm64_env.cpuinfo("neoverse-n2", 1)


def test_ort_mobile_scores_int8_on_the_declared_arm64_device(tmp_path):
    spec = load_target("ort-mobile")
    target = make_target(spec)
    host_is_arm = target.accuracy_emulation("int8") is None and spec.device == "arm64-dotprod"
    if not host_is_arm:
        assert target.accuracy_emulation("int8") == "cortex-a76"  # arm64-dotprod's qemu model
    assert target.accuracy_emulation("fp32") is None  # FP32 kernels do not saturate: host run
    off = make_target(spec.model_copy(update={"options": {**spec.options, "emulate": False}}))
    assert off.accuracy_emulation("int8") is None
    amd64 = make_target(spec.model_copy(update={"options": {**spec.options, "target_platform": "amd64"}}))
    assert amd64.accuracy_emulation("int8") is None  # an amd64 .ort runs x86 kernels


def test_not_set_up_is_a_reason_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    reason = arm64_env.unavailable_reason()
    assert reason and ("make arm64-env" in reason or "qemu-user" in reason)


def test_without_the_runtime_the_host_accuracy_stays_with_a_note(tmp_path, monkeypatch):
    import numpy as np

    from compressor.bench.emulate import rescore_on_device
    from compressor.data import Dataset

    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))  # nothing set up there
    target = make_target(load_target("ort-mobile"))
    if target.accuracy_emulation("int8") is None:
        pytest.skip("this host runs arm64 kernels itself")
    measured = {"accuracy": {"metric": "top1", "value": 0.5}}
    data = Dataset({"x": np.zeros((2, 4), np.float32)}, np.zeros(2, np.int64))
    got = rescore_on_device(target, tmp_path / "m.ort", "int8", measured, data, metric="top1", threads=1,
                            reference=None)
    assert "accuracy from this host's kernels" in got["emulation_unavailable"]
    assert measured == {"accuracy": {"metric": "top1", "value": 0.5}}  # untouched: the pipeline marks it host


def test_setup_is_cached_and_rebuilds_offline(tmp_path, monkeypatch):
    """A second set-up downloads nothing; with the unpacked folders gone, it rebuilds them from
    the downloaded .debs and wheels with apt-get and pip download forbidden."""
    env = _arm64_env()
    said: list[str] = []
    assert arm64_env.setup(env.root, log=said.append) == env and said == []

    copy = arm64_env.Arm64Env(tmp_path / "arm64")
    shutil.copytree(env.root / "debs", copy.root / "debs")
    shutil.copytree(env.root / "wheels", copy.root / "wheels")
    real_run = arm64_env._run

    def offline(cmd, what, **kw):
        assert cmd[0] != "apt-get" and "pip" not in cmd, f"downloaded: {cmd}"
        return real_run(cmd, what, **kw)

    monkeypatch.setattr(arm64_env, "_run", offline)
    arm64_env.setup(copy.root, log=said.append)
    assert copy.versions() == arm64_env.wanted_versions() and not any("download" in m for m in said)


@pytest.mark.slow
def test_quickstart_u8s8_keeps_fp32_accuracy_on_arm64_kernels(tmp_path):
    """`compressor run` for ort-mobile scores the U8S8 model on arm64 kernels (within 1 pp of
    FP32) while the same model on x86 AVX2 kernels loses more than 1.5 pp."""
    _arm64_env()
    if shutil.which("qemu-x86_64") is None:
        pytest.skip("qemu-x86_64 is not installed (Debian's qemu-user), needed for the AVX2 side")
    weights = ROOT / "examples" / "weights" / "fashion_cnn.safetensors"
    if not weights.exists():
        pytest.skip("run `make weights` first (examples/weights/fashion_cnn.safetensors)")
    recipe = (ROOT / "recipes" / "quickstart.yaml").read_text()
    for old, new in [("evaluation: {split: test}", "evaluation: {split: test, samples: 500}"),
                     ("benchmark: {warmup: 50, iterations: 200, min_duration_s: 1.0,",
                      "benchmark: {warmup: 2, iterations: 5, min_duration_s: 0.0,"),
                     ("per_channel: true}", "per_channel: true, activation_type: uint8, weight_type: int8}"),
                     ("targets: [onnxruntime-cpu]", "targets: [ort-mobile]"), ("gates:", "#")]:
        assert old in recipe, old
        recipe = recipe.replace(old, new)
    path = tmp_path / "qs.yaml"
    path.write_text(recipe.replace("examples/", f"{ROOT}/examples/"))
    compressor = [sys.executable, "-m", "compressor"]
    run = subprocess.run([*compressor, "run", str(path), "--out", str(tmp_path / "run"), "-q"],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    fp32, int8 = (next(r for r in report["results"] if r["variant"] == v) for v in ("baseline", "compressed"))
    assert int8["accuracy_kernels"] == "emulated-arm64" and int8["device"]["emulated_cpu"] == "cortex-a76"
    assert int8["device"]["emulation"]["machine"] == "aarch64"
    arm_drop = 100 * (fp32["accuracy"]["value"] - int8["accuracy"]["value"])
    assert arm_drop <= 1.0, f"U8S8 on arm64 kernels lost {arm_drop:.2f} pp"
    assert "emulated arm64 (cortex-a76)" in (tmp_path / "run" / "report.md").read_text()

    bench = subprocess.run([*compressor, "bench", str(tmp_path / "run" / "artifacts" / "00-quantize.onnx"),
                            "--data", "fashion-mnist", "--samples", "500", "--threads", "1",
                            "--emulate-cpu", "x86-64-avx2", "--out", str(tmp_path / "avx2.json")],
                           capture_output=True, text=True, check=False, cwd=ROOT)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    avx2 = json.loads((tmp_path / "avx2.json").read_text())["results"][0]
    avx2_drop = 100 * (fp32["accuracy"]["value"] - avx2["accuracy"]["value"])
    assert avx2_drop > 1.5, f"the model no longer saturates AVX2 kernels ({avx2_drop:.2f} pp): pick another"


def test_bench_emulate_arm64_scores_an_onnx_file(cli, tmp_path):
    """`compressor bench --emulate-cpu arm64` on a real trained model: the aarch64 runtime's FP32
    accuracy equals this host's (FP32 kernels differ only in rounding), no latency kept."""
    _arm64_env()
    model = _tiny_trained_onnx(tmp_path)
    host = cli("bench", model, "--data", "digits", "--samples", "200", "--out", tmp_path / "host.json")
    assert host.exit_code == 0, host.output
    res = cli("bench", model, "--data", "digits", "--samples", "200", "--emulate-cpu", "arm64-i8mm",
              "--out", tmp_path / "arm.json")
    assert res.exit_code == 0, res.output
    arm = json.loads((tmp_path / "arm.json").read_text())["results"][0]
    want = json.loads((tmp_path / "host.json").read_text())["results"][0]["accuracy"]["value"]
    assert arm["accuracy_kernels"] == "emulated-arm64" and arm["device"]["emulated_cpu"] == "neoverse-n2"
    assert "latency_ms" not in arm and arm["accuracy"]["value"] == pytest.approx(want, abs=0.005)
    assert arm["accuracy"]["value"] > 0.8  # a trained model, not chance


def _tiny_trained_onnx(tmp_path: Path) -> Path:
    """A logistic-regression ONNX model fitted (least squares) on scikit-learn's digits."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from compressor.data import load_split

    train = load_split("digits", "train", None)
    x = train.inputs[next(iter(train.inputs))].reshape(len(train), -1).astype(np.float64)
    y = np.eye(10)[train.labels]
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.linalg.lstsq(xb, y, rcond=None)[0].astype(np.float32)
    shape = list(train.inputs[next(iter(train.inputs))].shape[1:])
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["y"])], "digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(w[:-1], "w"), numpy_helper.from_array(w[-1], "b")])
    path = tmp_path / "digits.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path
