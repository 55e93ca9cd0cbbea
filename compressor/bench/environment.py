"""Describe the machine a benchmark ran on."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from compressor.utils.versions import COMPRESSOR_VERSION, package_versions

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimddp")


def cpu_info() -> dict[str, Any]:
    from compressor.targets.devices import read_cpuinfo

    model, flags = read_cpuinfo()
    return {"model": model or platform.processor() or platform.machine(),
            "flags": [f for f in FLAGS_OF_INTEREST if f in flags],
            "logical_cores": os.cpu_count(), "machine": platform.machine()}


def describe_environment(threads: int) -> dict[str, Any]:
    from compressor.targets.devices import detect_host

    cpu = cpu_info()
    return {
        "cpu": cpu["model"], "cpu_flags": cpu["flags"], "device": detect_host().describe(),
        "logical_cores": cpu["logical_cores"],
        "machine": cpu["machine"], "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "host": socket.gethostname(), "threads": threads,
        "compressor": COMPRESSOR_VERSION, "runtimes": package_versions(),
    }
