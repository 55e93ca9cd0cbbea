"""Devices a target deploys to: the instruction sets that decide which INT8 kernels run.

A target compiles for a device. For host targets the device is detected from this
machine's CPU; where the model is compiled for another machine (an arm64 phone for
``ort-mobile``, an older x86 server) it is declared, in the target file (``device:``)
or in the recipe (``devices: {target: profile}``). The quantization defaults follow
(runtime, device): see :mod:`compressor.targets.quant_defaults`.

    >>> detect_host().label                     # doctest: +SKIP
    'x86-64 AVX512-VNNI'
    >>> resolve_device("arm64-dotprod").int8_dot
    True
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any, Literal

from compressor.errors import RecipeError

# /proc/cpuinfo flag -> the feature name used here
_X86_FLAGS = {"avx2": "avx2", "avx512f": "avx512", "avx512_vnni": "avx512-vnni", "avx_vnni": "avx-vnni",
              "amx_int8": "amx", "avx512_bf16": "avx512-bf16"}
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm"}

#: Declarable device profiles: name -> (architecture, features, qemu CPU model that runs
#: the same kernel paths, or None where qemu cannot emulate them (TCG has no AVX-512)).
PROFILES: dict[str, tuple[str, frozenset[str], str | None]] = {
    "x86-64-avx2": ("x86_64", frozenset({"avx2"}), "Haswell"),
    "x86-64-avx512": ("x86_64", frozenset({"avx2", "avx512"}), None),
    "x86-64-avx-vnni": ("x86_64", frozenset({"avx2", "avx-vnni"}), None),
    "x86-64-avx512-vnni": ("x86_64", frozenset({"avx2", "avx512", "avx512-vnni"}), None),
    "x86-64-amx": ("x86_64", frozenset({"avx2", "avx512", "avx512-vnni", "avx512-bf16", "amx"}), None),
    "arm64": ("arm64", frozenset({"neon"}), "cortex-a53"),
    "arm64-dotprod": ("arm64", frozenset({"neon", "dotprod"}), "cortex-a76"),
    "arm64-i8mm": ("arm64", frozenset({"neon", "dotprod", "i8mm"}), "neoverse-n2"),
}
HOST = "host"
GPU = "cuda"
#: what a target file's ``device:`` may say besides a profile name
ALIASES = {"cpu": HOST, HOST: HOST, GPU: GPU}


@dataclass(frozen=True)
class Device:
    """What a target deploys to: architecture and the instruction-set features that
    matter for INT8 kernels. ``source`` says whether it was detected or declared."""

    name: str
    arch: str
    features: frozenset[str] = field(default_factory=frozenset)
    source: Literal["detected", "declared"] = "declared"
    model: str | None = None  # the CPU model string, for a detected host or a measured profile
    profile: str | None = None  # the device profile file it was declared by (``device: profiles/pi5.json``)

    @property
    def int8_dot(self) -> bool:
        """Whether the CPU has 8-bit dot-product instructions that accumulate in 32 bits
        (x86 VNNI/AMX, arm64 dotprod/i8mm). Without them x86 INT8 kernels multiply-add
        pairs into saturating 16-bit sums."""
        return bool(self.features & {"avx512-vnni", "avx-vnni", "amx", "dotprod", "i8mm"})

    @property
    def is_gpu(self) -> bool:
        return self.arch == GPU

    @property
    def label(self) -> str:
        """A short human name: ``x86-64 AVX512-VNNI+AMX``, ``x86-64 AVX2``, ``arm64 dotprod``."""
        if self.is_gpu:
            return "NVIDIA GPU (CUDA)"
        if self.arch == "x86_64":
            order = ["amx", "avx512-vnni", "avx-vnni", "avx512", "avx2"]
            best = [f for f in order if f in self.features]
            top = [best[0]] if best else []
            if "amx" in top and "avx512-vnni" in self.features:
                top = ["avx512-vnni", "amx"]
            return "x86-64 " + ("+".join(t.upper() for t in top) or "SSE")
        arm = [f for f in ("dotprod", "i8mm") if f in self.features]
        return "arm64" + (" " + "+".join(arm) if arm else "")

    def same_kernels(self, other: Device) -> bool:
        """Whether INT8 kernels on ``other`` take the same path as on this device."""
        return self.arch == other.arch and self.int8_dot == other.int8_dot

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "label": self.label, "arch": self.arch,
                               "features": sorted(self.features), "source": self.source}
        if self.model:
            out["model"] = self.model
        if self.profile:
            out["profile"] = self.profile
        return out


def read_cpuinfo() -> tuple[str | None, set[str]]:
    """The CPU model string and feature flags from /proc/cpuinfo (None, {} where unreadable)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "CPU part") and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_identity() -> dict[str, Any]:
    """This CPU as a profile records it: vendor, family/model numbers (x86) or implementer/part
    (arm64), model string, flags, machine and core count."""
    info: dict[str, str] = {}
    keys = {"vendor_id": "vendor", "cpu family": "family", "model": "model_number", "model name": "model",
            "CPU implementer": "implementer", "CPU part": "part", "flags": "flags", "Features": "flags"}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                name = keys.get(key.strip())
                if name and name not in info:
                    info[name] = value.strip()
    except OSError:
        pass
    return {**info, "machine": platform.machine(), "cores": os.cpu_count()}


def host_device(model: str | None, flags: set[str], machine: str | None = None) -> Device:
    """The device described by a CPU model string and /proc/cpuinfo flags."""
    machine = (machine or platform.machine()).lower()
    if machine in ("aarch64", "arm64"):
        return Device(HOST, "arm64", frozenset(v for k, v in _ARM_FLAGS.items() if k in flags), "detected", model)
    return Device(HOST, "x86_64", frozenset(v for k, v in _X86_FLAGS.items() if k in flags), "detected", model)


_HOST: Device | None = None


#: names a profile that replaces the detected host, to try another CPU's defaults (e.g. run
#: the test suite with AVX2 settings on a VNNI machine); the kernels stay the machine's own
HOST_OVERRIDE_ENV = "COMPRESSOR_HOST_DEVICE"


def detect_host() -> Device:
    """This machine's CPU (read once per process), or the profile named by
    ``COMPRESSOR_HOST_DEVICE``."""
    global _HOST
    if _HOST is None:
        model, flags = read_cpuinfo()
        override = os.environ.get(HOST_OVERRIDE_ENV)
        if override:
            if override not in PROFILES:
                raise RecipeError(f"{HOST_OVERRIDE_ENV}={override!r} is not a device profile; known: "
                                  + ", ".join(PROFILES))
            arch, features, _ = PROFILES[override]
            _HOST = Device(HOST, arch, features, "detected", f"{model} as {override} ({HOST_OVERRIDE_ENV})")
        else:
            _HOST = host_device(model, flags)
    return _HOST


def _unknown_device(name: str | None) -> str:
    return (f"unknown device {name!r}; known: cpu (the host), cuda, {', '.join(PROFILES)}, or a profile file "
            "(*.json) from `compressor device probe`")


def resolve_device(name: str | None) -> Device:
    """A device from a target file's or recipe's ``device:`` value (``cpu``/``host``:
    the detected host; ``cuda``: an NVIDIA GPU; a name from :data:`PROFILES`; or a measured
    profile file, ``*.json``, written by ``compressor device probe``)."""
    from compressor.targets.profiles import is_profile_name, load_profile

    if is_profile_name(name):
        prof = load_profile(str(name))
        flags = set(str(prof.cpu.get("flags", "")).split())
        found = host_device(prof.cpu.get("model"), flags, prof.cpu.get("machine"))
        return Device(str(name), found.arch, found.features, "declared", prof.cpu.get("model"), prof.path)
    key = ALIASES.get(name or HOST, name or HOST)
    if key == HOST:
        return detect_host()
    if key == GPU:
        return Device(GPU, GPU, frozenset(), "declared")
    if key not in PROFILES:
        raise RecipeError(_unknown_device(name),
                          hint="declare the device the model deploys to, e.g. device: arm64-dotprod")
    arch, features, _ = PROFILES[key]
    return Device(key, arch, features, "declared")


def check_device_name(name: str) -> str:
    """Validate a device name where it is written (recipes and target files), without
    detecting anything."""
    if name not in ALIASES and name not in PROFILES and not name.endswith(".json"):
        raise ValueError(_unknown_device(name))
    return name
