"""Load weights without ever unpickling untrusted data."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from compressor.errors import ModelLoadError

SAFE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def load_state_dict(path: str | Path) -> dict[str, Any]:
    """Read a state_dict from ``.safetensors`` or (weights-only) ``.pt/.pth/.bin``.

    A checkpoint that needs full unpickling (a pickled module, custom classes) is
    refused: unpickling runs arbitrary code. Convert it to safetensors instead.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{path} is not a valid safetensors file: {e}") from None
    if path.suffix not in SAFE_SUFFIXES:
        raise ModelLoadError(f"unsupported weights format {path.suffix!r} for {path}", hint="use .safetensors (or a .pt/.pth state_dict)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise ModelLoadError(
            f"{path} refused: it is not a weights-only checkpoint and loading it would unpickle arbitrary code ({first})",
            hint="re-save the state_dict with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') in a trusted environment",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read weights from {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return obj


def apply_state_dict(model: Any, state: dict[str, Any], source: str | Path) -> None:
    """Load ``state`` strictly; a mismatch names the first missing/unexpected keys."""
    result_missing, result_unexpected, shape_errors = [], [], []
    own = model.state_dict()
    for k, v in state.items():
        if k not in own:
            result_unexpected.append(k)
        elif tuple(own[k].shape) != tuple(v.shape):
            shape_errors.append(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    result_missing = [k for k in own if k not in state]
    if result_missing or result_unexpected or shape_errors:
        parts = []
        if shape_errors:
            parts.append("shape mismatch " + "; ".join(shape_errors[:3]))
        if result_missing:
            parts.append(f"missing {len(result_missing)} key(s) e.g. {result_missing[:3]}")
        if result_unexpected:
            parts.append(f"unexpected {len(result_unexpected)} key(s) e.g. {result_unexpected[:3]}")
        raise ModelLoadError(
            f"weights {source} do not match the model architecture: " + ", ".join(parts),
            hint="check that model.factory builds the architecture these weights were trained for",
        )
    model.load_state_dict(state, strict=True)
