"""Say what a model file is without executing anything in it.

Pickle-based checkpoints are read opcode by opcode with :func:`pickletools.genops`
(nothing is unpickled): every GLOBAL / STACK_GLOBAL reference is listed and any name
outside torch's weights-only allowlist is flagged, because unpickling would import
and call it. Safetensors headers, ``.npy`` headers inside ``.npz`` files and ONNX
protobufs (without their external data) are parsed as data.

>>> info = inspect_model("model.pt")       # doctest: +SKIP
>>> info["safe"], info["unsafe"]
(False, ['unsafe: would execute posix.system'])
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import math
import pickletools
import struct
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

from compressor.errors import ModelLoadError

# names unpickling may resolve in a weights-only checkpoint (used when torch is absent)
_FALLBACK_SAFE_PREFIXES = ("torch._utils._rebuild_", "torch._tensor._rebuild_")
_FALLBACK_SAFE = {"collections.OrderedDict", "torch.Size", "torch.device", "torch.serialization._get_layout",
                  "_codecs.encode", "builtins.set", "builtins.bytearray", "builtins.complex"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
MAX_TENSORS_LISTED = 200


def safe_globals() -> set[str]:
    """The ``module.name`` references torch's weights-only unpickler accepts."""
    try:
        from torch import _weights_only_unpickler as w

        return set(w._get_allowed_globals())
    except Exception:  # noqa: BLE001 - torch absent or its private API moved: use the small fixed list
        return set(_FALLBACK_SAFE)


def _is_safe(name: str, allowed: set[str]) -> bool:
    if name in allowed:
        return True
    if name.startswith(_FALLBACK_SAFE_PREFIXES):
        return True
    # dtypes and storage classes: torch.float32, torch.FloatStorage, ...
    mod, _, attr = name.rpartition(".")
    return mod == "torch" and (attr.endswith("Storage") or attr in _TORCH_DTYPES)


_TORCH_DTYPES = {"float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64", "bool",
                 "complex64", "complex128", "float8_e4m3fn", "float8_e5m2"}


def pickle_globals(data: bytes | BinaryIO) -> list[str]:
    """Every ``module.name`` a pickle stream would import, read from its opcodes only.

    STACK_GLOBAL takes its two strings from the stack; strings may come straight from
    the stream or from the memo, so a small model of both is kept.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    found: list[str] = []
    recent: list[Any] = []  # values pushed (strings, or None for anything else)
    memo: dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                found.append(f"{module}.{attr}")
                recent.append(None)
            elif name == "STACK_GLOBAL":
                attr = recent.pop() if recent else None
                module = recent.pop() if recent else None
                found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str)
                             else "<unresolved STACK_GLOBAL>")
                recent.append(None)
            elif name in _STRING_OPS:
                recent.append(arg if isinstance(arg, str) else bytes(arg).decode("latin-1"))
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(arg)))
            elif name in ("INST", "OBJ"):
                if name == "INST":
                    module, _, attr = str(arg).partition(" ")
                    found.append(f"{module}.{attr}")
                recent.append(None)
            else:
                recent.append(None)
            del recent[:-64]  # only the top of the stack matters for STACK_GLOBAL
    except Exception as e:  # noqa: BLE001 - ValueError on corrupt streams
        found.append(f"<unreadable pickle: {type(e).__name__}>")
    return found


def _py3_name(name: str) -> str:
    # what the unpickler really imports: protocol <= 2 writes Python 2 names (__builtin__.exec)
    module, _, attr = name.rpartition(".")
    module, attr = _compat_pickle.NAME_MAPPING.get((module, attr), (module, attr))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attr}"


def classify_globals(names: list[str]) -> tuple[list[str], list[str]]:
    """(distinct references, 'unsafe: would execute X' findings)."""
    allowed = safe_globals()
    distinct = sorted({_py3_name(n) for n in names})
    unsafe = [f"unsafe: would execute {n}" for n in distinct if not _is_safe(n, allowed)]
    return distinct, unsafe


def detect_format(path: Path) -> str:
    """onnx | safetensors | torch-zip | npz | zip | legacy-pickle | unknown, from the bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "zip"
    if head[:1] == b"\x80" or path.suffix in (".pkl", ".pickle"):
        return "legacy-pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and n < 100 * 1024 * 1024:
            return "safetensors"
    if path.suffix == ".onnx":
        return "onnx"
    return "unknown"


def _safetensors(path: Path, info: dict[str, Any]) -> None:
    # the header is JSON after an 8-byte length: read it as data (the library needs a framework import)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ModelLoadError(f"{path} is truncated: no safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise ModelLoadError(f"{path} is truncated or corrupt: header claims {n} bytes, file has {size - 8}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{path} is not a valid safetensors file: header is not JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path} is not a valid safetensors file: header is not a JSON object")
    tensors = []
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            info["metadata"] = t
            continue
        if not isinstance(t, dict) or not {"dtype", "shape", "data_offsets"} <= set(t):
            raise ModelLoadError(f"{path} is not a valid safetensors file: bad entry for tensor {name!r}")
        tensors.append({"name": name, "shape": list(t["shape"]), "dtype": t["dtype"]})
        end = max(end, int(t["data_offsets"][1]))
    if end > size - 8 - n:
        raise ModelLoadError(f"{path} is truncated: tensors need {end} data bytes, file has {size - 8 - n}")
    _add_tensors(info, tensors)
    info["tensor_bytes"] = end


def _torch_zip(path: Path, info: dict[str, Any]) -> None:
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
        names = pickle_globals(z.read(pkl))
        info["tensor_bytes"] = sum(i.file_size for i in z.infolist() if "/data/" in i.filename)
    info["globals"], info["unsafe"] = classify_globals(names)
    if info["unsafe"]:
        return
    # Only after the opcode scan found nothing outside the allowlist: torch's restricted
    # (weights-only) unpickler, memory-mapped so no tensor data is read, gives names and shapes.
    try:
        import torch

        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch absent, or a file torch rejects
        info["note"] = f"tensor list unavailable: {type(e).__name__}"
        return
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict):
        _add_tensors(info, [{"name": str(k), "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                            for k, v in obj.items() if hasattr(v, "shape") and hasattr(v, "dtype")])


def _legacy_pickle(path: Path, info: dict[str, Any]) -> None:
    # torch's legacy format is several pickles in a row (magic, version, sys info, object, keys)
    names: list[str] = []
    with open(path, "rb") as f:
        for _ in range(5):
            if f.read(1) != b"\x80":
                break
            f.seek(-1, io.SEEK_CUR)
            names += pickle_globals(f)
    info["globals"], info["unsafe"] = classify_globals(names)
    info.setdefault("note", "legacy pickle: compressor never loads these; convert to safetensors")


def _npz(path: Path, info: dict[str, Any]) -> None:
    import numpy as np

    tensors = []
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            with z.open(n) as f:
                try:
                    version = np.lib.format.read_magic(f)
                    shape, _fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                              else np.lib.format.read_array_header_2_0(f))
                except ValueError as e:
                    raise ModelLoadError(f"{path}: entry {n} is not a valid .npy array ({e})") from None
            if dtype.hasobject:
                info["unsafe"].append(f"unsafe: {n} holds Python objects (would need unpickling)")
            tensors.append({"name": n[:-4], "shape": list(shape), "dtype": str(dtype)})
    _add_tensors(info, tensors)


def _onnx(path: Path, info: dict[str, Any]) -> None:
    import onnx

    from compressor.models.onnx_input import check_external_data, external_data_locations

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - DecodeError, OSError
        raise ModelLoadError(f"{path} is not a valid ONNX model ({type(e).__name__})",
                             hint="the file may be truncated or not ONNX") from None
    g = proto.graph
    ops: Counter[str] = Counter()

    def count(graph: Any) -> None:
        for node in graph.node:
            ops[(node.domain + "::" if node.domain not in ("", "ai.onnx") else "") + node.op_type] += 1
            for attr in node.attribute:  # If/Loop/Scan bodies
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    count(sub)

    count(g)

    def vi(v: Any) -> dict[str, Any]:
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
                if t.elem_type else "?", "shape": dims}

    info["opset"] = {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    info["ir_version"] = proto.ir_version
    info["producer"] = f"{proto.producer_name} {proto.producer_version}".strip()
    info["inputs"] = [vi(v) for v in g.input]
    info["outputs"] = [vi(v) for v in g.output]
    info["ops"] = dict(ops.most_common())
    _add_tensors(info, [{"name": t.name, "shape": list(t.dims),
                         "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name}
                        for t in g.initializer])
    locations = sorted(set(external_data_locations(proto)))
    info["external_data"] = {"locations": locations, "safe": True}
    if locations:
        try:
            check_external_data(path, locations)
        except ModelLoadError as e:
            info["external_data"].update(safe=False, problem=e.message)
            info["unsafe"].append(f"unsafe: {e.message}")


def _add_tensors(info: dict[str, Any], tensors: list[dict[str, Any]]) -> None:
    from compressor.utils.dtypes import dtype_bytes

    info["tensor_count"] = len(tensors)
    info["parameters"] = sum(math.prod(t["shape"]) for t in tensors)
    info["tensor_bytes"] = sum(math.prod(t["shape"]) * dtype_bytes(t["dtype"]) for t in tensors)
    info["tensors"] = tensors[:MAX_TENSORS_LISTED]


def inspect_model(path: str | Path) -> dict[str, Any]:
    """Describe a model file: format, tensors, ops, opset, external data, safety."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    fmt = detect_format(path)
    info: dict[str, Any] = {"path": str(path), "format": fmt, "size_bytes": path.stat().st_size, "unsafe": []}
    if fmt == "safetensors" or (fmt == "unknown" and path.suffix == ".safetensors"):
        if fmt == "unknown":
            raise ModelLoadError(f"{path} is not a valid safetensors file (truncated or corrupt header)")
        _safetensors(path, info)
    elif fmt == "torch-zip":
        _torch_zip(path, info)
    elif fmt == "legacy-pickle":
        _legacy_pickle(path, info)
    elif fmt == "npz":
        _npz(path, info)
    elif fmt == "onnx":
        _onnx(path, info)
    elif fmt == "zip":
        info["note"] = "a zip archive without data.pkl: not a torch checkpoint"
    info["safe"] = not info["unsafe"]
    return info
