"""Element sizes for dtype names as safetensors, numpy, torch and ONNX spell them."""

from __future__ import annotations

import re

_SAFETENSORS = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}


def dtype_bytes(name: str) -> int:
    """Bytes per element of ``name`` (``F32``, ``float32``, ``<f4``, ``bfloat16``...); 0 when unknown."""
    name = str(name)
    if name in _SAFETENSORS:
        return _SAFETENSORS[name]
    if name in ("bool", "bool_", "|b1"):
        return 1
    if name.startswith(("bfloat16", "float8")):
        return 2 if name == "bfloat16" else 1
    m = re.search(r"(\d+)$", name)
    if m and name.rstrip("0123456789") in ("float", "int", "uint", "complex"):
        return int(m.group(1)) // 8
    m = re.fullmatch(r"[<>|=]?[fiuc](\d+)", name)
    return int(m.group(1)) if m else 0
