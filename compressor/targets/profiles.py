"""Measured device profiles: what `compressor device probe` wrote on a device, read back where
a model is compiled for it (``device: profiles/pi5.json`` in a target file or a recipe).

A profile holds the device's CPU (model, family, flags), its runtime versions, each INT8
format's speed against FP32 on a few representative layers, whether its U8S8 kernels
saturate, and the date. The quantize step ranks formats for the declared device from it
(:func:`compressor.steps.quantize.formats.from_profile`).

    >>> p = load_profile("profiles/example.json")        # doctest: +SKIP
    >>> p.format_ratios("onnxruntime")["U8U8"]            # doctest: +SKIP
    1.8
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import RecipeError

PROFILE_VERSION = 1


def is_profile_name(name: str | None) -> bool:
    """Whether a ``device:`` value names a profile file rather than a built-in device."""
    return bool(name) and str(name).endswith(".json")


@dataclass(frozen=True)
class DeviceProfile:
    """A device profile file, parsed."""

    path: str
    data: dict[str, Any]

    @property
    def cpu(self) -> dict[str, Any]:
        return self.data.get("cpu", {})

    @property
    def arch(self) -> str:
        m = str(self.cpu.get("machine", "x86_64")).lower()
        return "arm64" if m in ("aarch64", "arm64") else "x86_64"

    @property
    def measured(self) -> str:
        return str(self.data.get("date", "?"))

    @property
    def saturates(self) -> bool | None:
        sat = self.data.get("saturation") or {}
        return sat.get("saturates")

    def format_ratios(self, runtime: str) -> dict[str, float]:
        """INT8 format -> its speed over FP32 on ``runtime`` (empty: not measured there)."""
        rt = (self.data.get("runtimes") or {}).get(runtime) or {}
        return {k: float(v["ratio"]) for k, v in (rt.get("formats") or {}).items() if v.get("ratio") is not None}

    def describe(self) -> str:
        """``pi5.json (Cortex-A76, measured 2026-12-04)``."""
        return f"{Path(self.path).name} ({self.cpu.get('model') or self.arch}, measured {self.measured})"


_LOADED: dict[str, DeviceProfile] = {}


def load_profile(path: str | Path) -> DeviceProfile:
    """Read and check a profile; a missing or malformed file is one RecipeError line."""
    key = str(Path(path).resolve())
    if key in _LOADED:
        return _LOADED[key]
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise RecipeError(f"device profile {path} cannot be read ({e.strerror})",
                          hint="write one on the device with `compressor device probe --out FILE`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"device profile {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or data.get("kind") != "compressor-device-profile":
        raise RecipeError(f"{path} is not a device profile (no kind: compressor-device-profile)",
                          hint="write one with `compressor device probe --out FILE`")
    if data.get("version") != PROFILE_VERSION:
        raise RecipeError(f"device profile {path} has version {data.get('version')!r}; this compressor reads "
                          f"version {PROFILE_VERSION}", hint="probe the device again")
    prof = DeviceProfile(key, data)
    _LOADED[key] = prof
    return prof


def find_profile(name: str, search: list[Path]) -> str:
    """The absolute path of profile ``name``: as given when absolute, else the first of
    ``search`` folders (the recipe's, its parent, the working folder) that holds it."""
    p = Path(name)
    if p.is_absolute():
        return str(p)
    for folder in search:
        if (folder / p).is_file():
            return str((folder / p).resolve())
    return str(p.resolve())
