"""Accuracy on another CPU's kernel path, under qemu-user emulation.

INT8 kernels differ by instruction set: ONNX Runtime's x86 U8S8 kernels saturate
16-bit sums without VNNI, so a model scores differently on an AVX2 laptop than on
the AVX512-VNNI server that quantized it. qemu-user runs this machine's Python under
another CPU model; ONNX Runtime picks its kernels from the emulated CPU's CPUID, so
the accuracy is that CPU's. Emulation is 50-150x slower and its timings mean nothing:
emulated benchmarks measure accuracy only.

qemu's TCG cannot emulate AVX-512, so VNNI results come only from a VNNI machine.

arm64 devices (``arm64``, ``arm64-dotprod``, ``arm64-i8mm``, or a qemu arm64 model such as
``cortex-a76``) run ONNX Runtime's aarch64 build under ``qemu-aarch64``: the compressor package
does not run there, so this process prepares the data and computes the metrics, and a
numpy + onnxruntime scorer (:mod:`compressor.bench.arm64_score`) produces the outputs in the
arm64 runtime that :mod:`compressor.bench.arm64_env` sets up.

    compressor bench model.onnx --data fashion-mnist --samples 1000 --emulate-cpu x86-64-avx2
    compressor bench model.ort --target ort-mobile --data photos.npz --emulate-cpu arm64-dotprod
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import BackendUnavailable, RecipeError, TargetFailed
from compressor.targets.base import Target
from compressor.targets.devices import PROFILES

#: set in the emulated child: the qemu CPU model it runs under
EMULATED_ENV = "COMPRESSOR_EMULATED_CPU"
QEMU_X86 = "qemu-x86_64"


def emulated_cpu() -> str | None:
    """The CPU model this process runs under (set by :func:`run_emulated`), or None."""
    return os.environ.get(EMULATED_ENV) or None


def qemu_cpu_for(name: str) -> str:
    """A device profile (``x86-64-avx2``) or a qemu CPU model (``Haswell``) -> the qemu model."""
    if name in PROFILES:
        _, _, cpu = PROFILES[name]
        if cpu is None:
            raise RecipeError(f"--emulate-cpu {name}: qemu cannot emulate AVX-512; measure on such a machine",
                              hint="emulatable: " + ", ".join(n for n, p in PROFILES.items() if p[2] and p[0] == "x86_64"))
        return cpu
    return name


def is_arm64(cpu: str) -> bool:
    """Whether the qemu CPU model (or device profile) ``cpu`` is an arm64 one (run by qemu-aarch64)."""
    if cpu in PROFILES:
        return PROFILES[cpu][0] == "arm64"
    return cpu.startswith(("cortex-a", "neoverse-", "a64fx")) or cpu in ARM64_QEMU_MODELS


#: arm64 qemu models without a cortex/neoverse prefix (``max``: every feature qemu has)
ARM64_QEMU_MODELS = ("max",)


def qemu_command(cpu: str, args: list[str]) -> list[str]:
    """``qemu-x86_64 -cpu CPU <this python> -m compressor ARGS``; checks qemu and the CPU model."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise BackendUnavailable(f"--emulate-cpu runs x86-64 CPU models; this machine is {platform.machine()}")
    qemu = shutil.which(QEMU_X86)
    if qemu is None:
        raise BackendUnavailable(f"{QEMU_X86} is not installed",
                                 hint="install Debian's qemu-user (`sudo apt-get install qemu-user`)")
    models = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True, check=False).stdout.split()
    if cpu not in models:
        raise RecipeError(f"--emulate-cpu: qemu has no CPU model {cpu!r}",
                          hint=f"try x86-64-avx2 (Haswell), or see `{QEMU_X86} -cpu help`")
    return [qemu, "-cpu", cpu, sys.executable, "-m", "compressor", *args]


def run_emulated(cpu: str, args: list[str]) -> int:
    """Run ``compressor ARGS`` under qemu with CPU model ``cpu``; returns its exit code."""
    cmd = qemu_command(cpu, args)
    env = {**os.environ, EMULATED_ENV: cpu, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, check=False, stderr=subprocess.PIPE, text=True)
    # qemu lists the model's CPUID features TCG lacks (pcid, x2apic, ...): none is an
    # instruction set the kernels use, so keep them out of the user's output
    for line in proc.stderr.splitlines():
        if "TCG doesn't support requested feature" not in line:
            print(line, file=sys.stderr)
    return proc.returncode


def arm64_accuracy(target: Target, model: Path, data: Dataset, *, cpu: str, metric: str, threads: int,
                   reference: list[np.ndarray] | None = None, precision: str = "int8",
                   extra_metrics: list[str] | tuple[str, ...] = (), batch: int = 32,
                   timeout_s: float = 3600) -> dict[str, Any]:
    """Accuracy (and parity with ``reference``) of ``model`` run by ONNX Runtime's aarch64 build
    under qemu CPU ``cpu``, with ``target``'s session settings: the fields of a result row.
    Raises BackendUnavailable when the arm64 runtime is not set up (the caller falls back)."""
    from compressor.bench import arm64_env
    from compressor.metrics import score_outputs

    settings = target.emulation_settings(threads)
    if settings is None:
        raise RecipeError(f"target {target.spec.name} ({target.spec.runtime}) has no arm64 emulation: "
                          "it runs ONNX Runtime's CPU kernels only (targets onnxruntime-cpu, ort-mobile)")
    reason = arm64_env.unavailable_reason()
    if reason:
        raise BackendUnavailable(reason)
    outputs, summary = arm64_env.score_outputs(arm64_env.Arm64Env(arm64_env.default_root()), model, data, cpu=cpu,
                                               settings=settings, batch=batch, timeout_s=timeout_s)
    if len(outputs[0]) != len(data):
        raise TargetFailed(f"arm64 emulation returned {len(outputs[0])} outputs for {len(data)} samples")
    out: dict[str, Any] = {**score_outputs(outputs, metric=metric, labels=data.labels, inputs=data.inputs,
                                           reference=reference, precision=precision, extra_metrics=extra_metrics),
                           "accuracy_kernels": "emulated-arm64",
                           "emulation": {k: summary.get(k) for k in ("qemu_cpu", "onnxruntime", "machine", "seconds")}}
    out["emulation"]["cpu"] = cpu
    return out


def rescore_on_device(target: Target, artifact: Path, precision: str, measured: dict[str, Any], data: Dataset, *,
                      metric: str, threads: int, reference: list[np.ndarray] | None,
                      extra_metrics: list[str] | tuple[str, ...] = (), batch: int = 32,
                      timeout_s: float = 3600) -> dict[str, Any]:
    """Where ``target`` scores ``precision`` artifacts on an emulated device's kernels (``ort-mobile``
    INT8 for an arm64 device), replace the host-kernel accuracy, parity and metrics in ``measured``
    (a result row's fields) with the emulated ones; the latency stays this host's. Returns what the
    result's ``device`` records: the emulated CPU, how it ran and the host-kernel accuracy, or why
    emulation was not possible (then ``measured`` keeps the host-kernel accuracy)."""
    cpu = target.accuracy_emulation(precision)
    if cpu is None or not measured.get("accuracy"):
        return {}
    host_accuracy = measured["accuracy"]["value"]
    try:
        emulated = arm64_accuracy(target, artifact, data, cpu=cpu, metric=metric, threads=threads,
                                  reference=reference, precision=target.precision_for(precision),
                                  extra_metrics=extra_metrics, batch=batch, timeout_s=timeout_s)
    except BackendUnavailable as e:
        return {"emulation_unavailable": f"{e} (accuracy from this host's kernels)"}
    info = emulated.pop("emulation")
    measured.update(emulated)
    return {"emulated_cpu": cpu, "emulation": info, "host_kernels_accuracy": host_accuracy}
