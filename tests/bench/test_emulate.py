"""Accuracy on another CPU's INT8 kernel path, under qemu-user (`bench --emulate-cpu`).

The quickstart test runs the AVX2 kernel path on every x86-64 machine: natively where
the host has no VNNI, under qemu's Haswell model where it has (qemu cannot emulate
AVX-512, so an AVX2 host cannot cover the VNNI path; the VNNI path is covered wherever
CI runs on a VNNI machine, natively, by the other tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compressor.bench.emulate import is_arm64, qemu_cpu_for
from compressor.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2]
needs_qemu = pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                                reason="qemu-user is not installed (make installs it when run as root)")


def test_profiles_map_to_qemu_models():
    assert qemu_cpu_for("x86-64-avx2") == "Haswell"
    assert qemu_cpu_for("Haswell") == "Haswell"  # a qemu model name passes through
    with pytest.raises(RecipeError, match="cannot emulate AVX-512"):
        qemu_cpu_for("x86-64-avx512-vnni")
    # arm64 profiles run under qemu-aarch64 (tests/bench/test_emulate_arm64.py)
    assert qemu_cpu_for("arm64-dotprod") == "cortex-a76" and is_arm64("cortex-a76") and is_arm64("arm64-i8mm")
    assert not is_arm64("Haswell") and not is_arm64("x86-64-avx2")


def test_emulation_needs_data(cli, tmp_path):
    res = cli("bench", tmp_path / "m.onnx", "--emulate-cpu", "x86-64-avx2")
    assert res.exit_code == 2 and "--emulate-cpu measures accuracy: give --data" in res.output


@needs_qemu
def test_unknown_qemu_model_is_one_error_line(cli, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    res = cli("bench", model, "--data", "digits", "--emulate-cpu", "Pentium9000")
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("Error: --emulate-cpu: qemu has no")


@needs_qemu
@pytest.mark.slow
def test_quickstart_int8_holds_on_the_avx2_kernel_path(tmp_path):
    """The quickstart's INT8 model, quantized for an AVX2 device (the device's defaults),
    keeps its FP32 accuracy when ONNX Runtime runs its AVX2 kernels."""
    import subprocess
    import sys

    weights = ROOT / "examples" / "weights" / "fashion_cnn.safetensors"
    if not weights.exists():
        pytest.skip("run `make weights` first (examples/weights/fashion_cnn.safetensors)")
    recipe = (ROOT / "recipes" / "quickstart.yaml").read_text()
    recipe = recipe.replace("evaluation: {split: test}", "evaluation: {split: test, samples: 500}")
    recipe = recipe.replace("benchmark: {warmup: 50, iterations: 200, min_duration_s: 1.0,",
                            "benchmark: {warmup: 2, iterations: 5, min_duration_s: 0.0,")
    recipe = recipe.replace("targets: [onnxruntime-cpu]", "targets: [onnxruntime-cpu]\ndevices: {onnxruntime-cpu: x86-64-avx2}")
    assert "x86-64-avx2" in recipe and "samples: 500" in recipe
    path = tmp_path / "qs.yaml"
    path.write_text(recipe.replace("examples/", f"{ROOT}/examples/"))

    compressor = [sys.executable, "-m", "compressor"]
    run = subprocess.run([*compressor, "run", str(path), "--out", str(tmp_path / "run"), "-q"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    fp32, int8 = (next(r for r in report["results"] if r["variant"] == v) for v in ("baseline", "compressed"))
    assert int8["device"]["quantization"]["settings"]["weight_type"] == "uint8"   # U8U8: no saturation
    assert "without VNNI" in int8["device"]["quantization"]["reason"]

    bench = subprocess.run([*compressor, "bench", str(tmp_path / "run" / "artifacts" / "00-quantize.onnx"),
                            "--data", "fashion-mnist", "--samples", "500", "--threads", "1",
                            "--emulate-cpu", "x86-64-avx2", "--out", str(tmp_path / "emu.json")],
                           capture_output=True, text=True, check=False)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    emu = json.loads((tmp_path / "emu.json").read_text())["results"][0]
    assert emu["accuracy_kernels"] == "emulated" and emu["device"]["emulated_cpu"] == "Haswell"
    assert "latency_ms" not in emu  # emulated time means nothing
    drop_pp = 100 * (fp32["accuracy"]["value"] - emu["accuracy"]["value"])
    assert drop_pp <= 0.5, f"INT8 on the AVX2 path lost {drop_pp:.2f} pp"
