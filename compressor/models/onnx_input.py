"""Accept an ONNX model file as input, safely."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compressor.errors import ModelLoadError
from compressor.utils.io import atomic_path


def external_data_locations(model_proto) -> list[str]:
    import onnx

    locs = []
    for tensor in onnx.external_data_helper._get_all_tensors(model_proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locs.append(entry.value)
    return locs


def check_external_data(model_path: Path, locations: list[str]) -> None:
    """Every external-data file must resolve inside the model's folder: no absolute
    paths, no ``..``, no symlinks leading out (path traversal, CVE-2024-27318)."""
    folder = model_path.resolve().parent
    for loc in locations:
        p = Path(loc)
        if p.is_absolute() or ".." in p.parts or loc.startswith(("/", "\\")):
            raise ModelLoadError(f"{model_path} refused: external data location {loc!r} points outside the model's folder")
        target = (folder / p).resolve()
        if os.path.commonpath([folder, target]) != str(folder):
            raise ModelLoadError(f"{model_path} refused: external data {loc!r} resolves outside the model's folder "
                                 "(through a symlink)")
        if not target.is_file():
            raise ModelLoadError(f"{model_path}: external data file {loc!r} is missing")


def load_onnx_checked(path: Path):
    """Load and check an ONNX model, refusing unsafe external data."""
    import onnx

    if not path.is_file():
        raise ModelLoadError(f"ONNX model {path} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, OSError, ...
        raise ModelLoadError(f"{path} is not a valid ONNX model ({type(e).__name__})",
                             hint="re-export it; the file may be truncated or not ONNX") from None
    check_external_data(path, external_data_locations(proto))
    try:
        onnx.checker.check_model(str(path))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{path} fails the ONNX checker: {first}") from None
    return proto


def prepare_onnx_input(src: Path, dst: Path) -> Path:
    """Validate ``src`` and copy it (as one self-contained file) to ``dst``."""
    import onnx

    proto = load_onnx_checked(src)
    if external_data_locations(proto):
        proto = onnx.load(str(src), load_external_data=True)
        with atomic_path(dst) as tmp:
            onnx.save_model(proto, str(tmp), save_as_external_data=False)
    else:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dst
