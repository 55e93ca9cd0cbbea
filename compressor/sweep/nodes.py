"""Benchmark nodes declare their device as a Ray resource, so a sweep can measure every
variant on one node of each kind of device.

A node started with ``ray start ... --resources '{"bench": 1, "bench@x86-64-avx2": 1}'``
offers one benchmark slot (``bench``) on an ``x86-64-avx2`` device. A benchmark task for
that device asks for both: one task at a time per node, only on nodes of that device.
The label is the device profile detected on the node (:func:`host_profile`; it follows
``COMPRESSOR_HOST_DEVICE``) or a label the node's owner gives (``compressor sweep-node
--device``; e.g. the name of a measured device profile).

    >>> node_resources("arm64-dotprod")
    {'bench': 1, 'bench@arm64-dotprod': 1}
"""

from __future__ import annotations

import re
from typing import Any

from compressor.errors import CompressorError, RecipeError
from compressor.targets.devices import PROFILES, detect_host

BENCH = "bench"
PREFIX = "bench@"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def host_profile() -> str:
    """The device profile this process runs on: the profile of this CPU's architecture with
    the most features, all of which the CPU has (``x86-64-amx`` on a Sapphire Rapids)."""
    host = detect_host()
    fits = [(len(f), name) for name, (arch, f, _) in PROFILES.items() if arch == host.arch and f <= host.features]
    return max(fits)[1] if fits else host.arch.replace("_", "-")


def check_label(label: str) -> str:
    """A device label as a node declares it: letters, digits, ``.``, ``_``, ``-``."""
    if not _LABEL.fullmatch(label):
        raise RecipeError(f"device label {label!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    return label


def node_resources(label: str) -> dict[str, int]:
    """The Ray resources a benchmark node of device ``label`` declares."""
    return {BENCH: 1, PREFIX + check_label(label): 1}


def bench_resources(device: str | None) -> dict[str, int]:
    """What a benchmark task asks for: a bench slot, on a node of ``device`` when given."""
    return {BENCH: 1, **({PREFIX + device: 1} if device else {})}


def cluster_devices(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Device label -> number of alive nodes offering it, from ``ray.nodes()``."""
    out: dict[str, int] = {}
    for n in nodes:
        if n.get("Alive"):
            for key in n.get("Resources", {}):
                if key.startswith(PREFIX):
                    out[key[len(PREFIX):]] = out.get(key[len(PREFIX):], 0) + 1
    return dict(sorted(out.items()))


def select_devices(spec: str, available: dict[str, int]) -> list[str]:
    """``all`` -> every device label in the cluster; ``A,B`` -> those (each must have a node)."""
    if not available:
        raise CompressorError("--devices: no Ray node declares a device (a 'bench@LABEL' resource)",
                              hint="start benchmark nodes with `compressor sweep-node` (docs/sweep.md)")
    if spec.strip() == "all":
        return list(available)
    wanted = [check_label(x.strip()) for x in spec.split(",") if x.strip()]
    missing = [d for d in wanted if d not in available]
    if missing or not wanted:
        raise CompressorError(f"--devices: no node of {', '.join(missing) or 'any device'} in the cluster; "
                              f"it has {', '.join(available)}")
    return list(dict.fromkeys(wanted))
