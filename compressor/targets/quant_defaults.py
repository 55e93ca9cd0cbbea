"""INT8 quantization defaults per (runtime, device), with the reason for each choice.

The quantize step's settings are resolved in this order: what the recipe sets
explicitly wins; then the target file's ``quantization:``; then the defaults here,
chosen from measurements (benchmarks/device_formats.py, benchmarks/results/device_formats.md):

- x86 with VNNI/AMX: U8 activations x S8 weights, per channel. VPDPBUSD accumulates
  in 32 bits; ORT's U8S8 QDQ ran the quickstart CNN 2.58x FP32 while its default S8S8
  ran 0.90x (docs/targets.md, benchmarks/device_formats.py).
- x86 without VNNI (AVX2, AVX-512F): ORT's U8S8 kernels multiply-add byte pairs into
  saturating 16-bit sums (VPMADDUBSW): the quickstart CNN lost 3.6 pp. U8U8 runs on
  kernels that do not saturate (-0.06 pp). Its speed is not a property of the flags: 2.20x
  FP32 on a Zen 3, 0.65x on a Zen 1 (both "AVX2, no VNNI"), so the run measures the formats
  where it can (``quantize.choose: measure``) and this table is only the unmeasured prior.
- arm64: ORT's ARM INT8 kernels (dot product, or widening multiplies on older cores)
  accumulate in 32 bits: U8S8, the format ORT recommends there.
- OpenVINO: its own INT8 kernels read the QDQ graph; it wants signed symmetric weights
  (U8S8), and they held on the AVX2 kernel path too (quickstart 94.0% = FP32 under qemu's
  Haswell model, where 7-bit weights, ``reduce_range``, cost 0.4 pp).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compressor.targets.devices import Device

U8S8 = {"activation_type": "uint8", "weight_type": "int8", "per_channel": True}
U8U8 = {"activation_type": "uint8", "weight_type": "uint8", "per_channel": True}

_ORT_RUNTIMES = ("onnxruntime", "ort-format")


@dataclass
class QuantChoice:
    """The quantization settings a target wants on its device, and why.

    ``choose`` says where the INT8 format comes from: ``measure`` (the quantize step times the
    candidates on this host), ``profile`` (a measured device profile ranked them: ``decision``),
    ``table`` (the defaults here, unmeasured) or ``pinned`` (the recipe or target file sets it).
    ``spec`` and ``device`` are the target's, for the step that measures (not serialized)."""

    settings: dict[str, Any]
    reason: str
    warnings: list[str] = field(default_factory=list)
    choose: str = "table"
    decision: dict[str, Any] | None = None
    spec: Any = None
    device: Device | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"settings": self.settings, "reason": self.reason, "choose": self.choose}
        if self.decision is not None:
            out["decision"] = self.decision
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def device_defaults(runtime: str, device: Device) -> QuantChoice:
    """The settings (runtime, device) wants when neither the recipe nor the target file sets them."""
    if runtime in _ORT_RUNTIMES:
        if device.arch == "arm64":
            return QuantChoice(dict(U8S8), f"{device.label}: ORT's ARM INT8 kernels accumulate in 32 bits; "
                               "U8 activations x S8 weights per channel")
        if device.int8_dot:
            return QuantChoice(dict(U8S8), f"{device.label}: VNNI accumulates U8 x S8 in 32 bits; U8S8 per "
                               "channel (the fastest ORT format on the VNNI CPUs measured so far)")
        return QuantChoice(dict(U8U8), f"{device.label} without VNNI: ORT's U8S8 kernels saturate 16-bit sums "
                           "(quickstart -3.6 pp); U8 activations x U8 weights per channel do not saturate (their "
                           "speed on this CPU is unmeasured: 2.2x FP32 on a Zen 3, 0.65x on a Zen 1)")
    if runtime == "openvino":
        if device.int8_dot or device.arch == "arm64":
            return QuantChoice(dict(U8S8), f"{device.label}: OpenVINO INT8 kernels take U8 activations x S8 "
                               "symmetric weights per channel")
        return QuantChoice(dict(U8S8), f"{device.label} without VNNI: OpenVINO's INT8 kernels kept U8 x S8 "
                           "accurate on the AVX2 path (unlike ORT's); U8 activations x S8 weights per channel")
    if runtime == "executorch":
        return QuantChoice({}, f"{device.label}: XNNPACK quantizes with its own PT2E quantizer (S8 symmetric "
                           "per-channel weights, S8 activations); the ONNX quantize settings do not apply")
    return QuantChoice({}, f"{runtime}: no device defaults; the target file's quantization settings apply")


def saturation_warning(runtime: str, device: Device, settings: dict[str, Any]) -> str | None:
    """A warning when explicit settings are known to be wrong for the device: U8S8 without
    reduce_range for ONNX Runtime on x86 without VNNI (16-bit saturation in its kernels)."""
    if runtime not in _ORT_RUNTIMES or device.arch != "x86_64" or device.int8_dot:
        return None
    if settings.get("mode", "static") != "static":
        return None  # dynamic quantization uses ORT's U8 x S8 GEMM with its own scaling; not measured here
    if settings.get("activation_type") == "uint8" and settings.get("weight_type") == "int8" \
            and not settings.get("reduce_range"):
        return (f"{device.label} without VNNI: U8 activations x S8 weights saturate 16-bit sums in the INT8 "
                "kernels (the quickstart lost 3.6 pp); set weight_type: uint8 or reduce_range: true, or drop "
                "these keys to use the device's defaults")
    return None


def resolve_quantization(runtime: str, device: Device, target_settings: dict[str, Any],
                         explicit: dict[str, Any]) -> QuantChoice:
    """The settings a quantize step gets for this target: ``explicit`` (what the recipe set)
    wins over ``target_settings`` (the target file), which wins over the device's defaults.
    Only the fill-ins are returned in ``settings``; warnings cover the effective settings."""
    base = device_defaults(runtime, device)
    fill = {**base.settings, **target_settings}
    reason = base.reason
    if target_settings:
        reason = f"the target file sets {', '.join(f'{k}: {v}' for k, v in target_settings.items())}; " + reason
    effective = {**fill, **explicit}
    if effective.get("activation_type") == "int8" and effective.get("weight_type") == "uint8" \
            and "weight_type" not in explicit:
        # ONNX Runtime has no S8 x U8 kernels: signed activations (set by the recipe) take S8 weights
        fill["weight_type"] = "int8"
        reason += "; the recipe sets activation_type: int8, which pairs with S8 weights (no S8 x U8 kernels)"
    choice = QuantChoice({k: v for k, v in fill.items() if k not in explicit}, reason)
    warning = saturation_warning(runtime, device, effective)
    if warning:
        choice.warnings.append(warning)
    return choice
