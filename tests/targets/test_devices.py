"""Devices and the quantization defaults that follow (runtime, device).

These tests never depend on the machine's own instruction set: hosts are built from
cpuinfo flags, and the pipeline tests declare the device they expect."""

from __future__ import annotations

import pytest

from compressor.errors import RecipeError
from compressor.pipeline import accuracy_kernels, quantization_plan, resolve_targets
from compressor.recipe.schema import Recipe
from compressor.targets.devices import detect_host, host_device, resolve_device
from compressor.targets.quant_defaults import resolve_quantization, saturation_warning

ZEN3 = host_device("AMD EPYC 7B13", {"avx", "avx2", "fma"}, "x86_64")
ZEN4 = host_device("AMD EPYC", {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, "x86_64")
SPR = host_device("Intel Xeon", {"avx2", "avx512f", "avx512_vnni", "amx_int8", "amx_tile"}, "x86_64")
PI5 = host_device("Cortex-A76", {"fp", "asimd", "asimddp"}, "aarch64")


@pytest.mark.parametrize("device,label,dot", [
    (ZEN3, "x86-64 AVX2", False), (ZEN4, "x86-64 AVX512-VNNI", True), (SPR, "x86-64 AVX512-VNNI+AMX", True),
    (PI5, "arm64 dotprod", True),
])
def test_detected_hosts(device, label, dot):
    assert device.source == "detected" and device.label == label and device.int8_dot is dot


def test_ort_defaults_follow_the_device():
    # without VNNI, U8S8 saturates: U8U8 instead; with VNNI or on arm64, U8S8
    no_vnni = resolve_quantization("onnxruntime", ZEN3, {}, {})
    assert no_vnni.settings == {"activation_type": "uint8", "weight_type": "uint8", "per_channel": True}
    assert "without VNNI" in no_vnni.reason and "saturate" in no_vnni.reason and not no_vnni.warnings
    for dev in (ZEN4, SPR, PI5, resolve_device("arm64")):
        choice = resolve_quantization("onnxruntime", dev, {}, {})
        assert choice.settings["weight_type"] == "int8", dev
        assert dev.label in choice.reason
    # OpenVINO's kernels kept U8S8 accurate on the AVX2 path (benchmarks/results/device_formats.md)
    for dev in (ZEN3, ZEN4):
        assert resolve_quantization("openvino", dev, {}, {}).settings == {
            "activation_type": "uint8", "weight_type": "int8", "per_channel": True}
    assert saturation_warning("openvino", ZEN3, {"activation_type": "uint8", "weight_type": "int8"}) is None


def test_explicit_settings_win_and_wrong_ones_warn():
    explicit = {"activation_type": "uint8", "weight_type": "int8"}
    choice = resolve_quantization("onnxruntime", ZEN3, {}, explicit)
    assert "weight_type" not in choice.settings and choice.settings["per_channel"] is True
    assert len(choice.warnings) == 1 and "saturate" in choice.warnings[0]
    # the same settings are right for a VNNI or arm64 device, and reduce_range or dynamic mode is fine
    assert not resolve_quantization("onnxruntime", ZEN4, {}, explicit).warnings
    assert not resolve_quantization("ort-format", PI5, {}, explicit).warnings
    assert saturation_warning("onnxruntime", ZEN3, {**explicit, "reduce_range": True}) is None
    assert saturation_warning("onnxruntime", ZEN3, {**explicit, "mode": "dynamic"}) is None
    # signed activations set by the recipe take S8 weights: ORT has no S8 x U8 kernels
    signed = resolve_quantization("onnxruntime", ZEN3, {}, {"activation_type": "int8"})
    assert signed.settings["weight_type"] == "int8" and "S8 weights" in signed.reason
    # a target file's settings win over the device's defaults; the recipe's over both
    tf = resolve_quantization("onnxruntime", ZEN3, {"weight_type": "int8", "reduce_range": True}, {})
    assert tf.settings["weight_type"] == "int8" and tf.settings["reduce_range"] and not tf.warnings
    assert "target file" in tf.reason


def test_kernels_of_the_accuracy():
    assert accuracy_kernels(detect_host(), detect_host()) == "device"
    assert accuracy_kernels(resolve_device("arm64-dotprod"), ZEN4) == "host"
    assert accuracy_kernels(resolve_device("x86-64-avx2"), ZEN4) == "host"
    assert accuracy_kernels(resolve_device("x86-64-avx2"), ZEN3) == "device"  # same INT8 kernel path
    assert accuracy_kernels(resolve_device("cuda"), ZEN3) == "device"  # measured on the GPU itself


def _recipe(**extra) -> Recipe:
    return Recipe.model_validate({
        "name": "r", "model": {"onnx": "m.onnx"}, "data": {"source": "digits"},
        "steps": [{"quantize": {"per_channel": True}}], "targets": ["onnxruntime-cpu", "ort-mobile"], **extra})


def test_recipe_devices_override_the_target_file():
    specs = resolve_targets(_recipe(devices={"onnxruntime-cpu": "x86-64-avx2"}), None)
    plan = quantization_plan(_recipe(), specs)
    assert plan["onnxruntime-cpu"].settings["weight_type"] == "uint8"
    assert plan["ort-mobile"].settings["weight_type"] == "int8"  # declared arm64 phone in targets/ort-mobile.yaml
    assert "arm64" in plan["ort-mobile"].reason
    with pytest.raises(RecipeError, match="unknown device 'riscv'"):
        resolve_targets(_recipe(devices={"ort-mobile": "riscv"}), None)
    with pytest.raises(ValueError, match="devices names target"):
        _recipe(devices={"openvino-cpu": "host"})
