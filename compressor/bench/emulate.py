"""Accuracy on another CPU's kernel path, under qemu-user emulation.

INT8 kernels differ by instruction set: ONNX Runtime's x86 U8S8 kernels saturate
16-bit sums without VNNI, so a model scores differently on an AVX2 laptop than on
the AVX512-VNNI server that quantized it. qemu-user runs this machine's Python under
another CPU model; ONNX Runtime picks its kernels from the emulated CPU's CPUID, so
the accuracy is that CPU's. Emulation is 50-150x slower and its timings mean nothing:
emulated benchmarks measure accuracy only.

qemu's TCG cannot emulate AVX-512, so VNNI results come only from a VNNI machine.

    compressor bench model.onnx --data fashion-mnist --samples 1000 --emulate-cpu x86-64-avx2
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

from compressor.errors import BackendUnavailable, RecipeError
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
        arch, _, cpu = PROFILES[name]
        if arch != "x86_64":
            raise RecipeError(f"--emulate-cpu {name}: emulating an {arch} device needs an {arch} Python and "
                              "wheels under qemu, which compressor does not set up",
                              hint="measure on the device with `compressor bench --data`, see docs/targets.md")
        if cpu is None:
            raise RecipeError(f"--emulate-cpu {name}: qemu cannot emulate AVX-512; measure on such a machine",
                              hint="emulatable: " + ", ".join(n for n, p in PROFILES.items() if p[2] and p[0] == "x86_64"))
        return cpu
    return name


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
