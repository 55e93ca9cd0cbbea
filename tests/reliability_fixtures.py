"""Shared helpers for the reliability/security tests: a tiny model + recipe on the
digits data, and real malicious checkpoints whose payload would create a file."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml

TINY_FACTORY = textwrap.dedent("""
    import torch
    from torch import nn


    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
""")


def write_tiny_model(folder: Path) -> tuple[Path, Path]:
    """tiny.py (factory) and tiny.safetensors (its seeded weights) in ``folder``."""
    import importlib.util

    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    factory = folder / "tiny.py"
    factory.write_text(TINY_FACTORY)
    spec = importlib.util.spec_from_file_location("tiny_for_weights", factory)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    weights = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in mod.build().state_dict().items()}, str(weights))
    return factory, weights


def tiny_recipe_dict(**overrides: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "model": {"factory": "tiny.py:build", "weights": "tiny.safetensors", "input_shape": [1, 1, 8, 8]},
        "data": {"source": "digits", "calibration": {"split": "train", "samples": 64},
                 "evaluation": {"split": "test", "samples": 120}},
        "steps": [{"quantize": {"mode": "static"}}],
        "targets": ["onnxruntime-cpu"],
        "benchmark": {"warmup": 2, "iterations": 5, "min_duration_s": 0.0},
    }
    r.update(overrides)
    return r


def write_tiny_recipe(folder: Path, **overrides: Any) -> Path:
    """A runnable recipe (+ its model files) in ``folder``."""
    write_tiny_model(folder)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(**overrides), sort_keys=False))
    return path


# ----------------------------------------------------------------------------- malicious files


class OpenPayload:
    """Unpickling calls builtins.open(target, 'w'): creates the file."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (builtins.open, (self.target, "w"))


class SystemPayload:
    """Unpickling calls os.system('touch target')."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class ExecPayload:
    """Unpickling calls builtins.exec(...) with code that creates the file."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.target!r}, 'w').close()",))


class SubprocessPayload:
    """Unpickling calls subprocess.call(['touch', target])."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.target],))


def malicious_files(folder: Path, marker_dir: Path) -> dict[str, Path]:
    """Real malicious checkpoints; unpickling ``name`` creates ``marker_dir/<name>.pwned``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tensor = torch.zeros(2, 2)
    files: dict[str, Path] = {}

    def m(name: str) -> Path:
        return marker_dir / f"{name}.pwned"

    def save(name: str, obj: Any, **kw: Any) -> None:
        files[name] = folder / name
        torch.save(obj, files[name], **kw)

    save("open_zip.pt", OpenPayload(m("open_zip.pt")))
    save("system_zip.pth", {"weight": tensor, "evil": SystemPayload(m("system_zip.pth"))})
    save("exec_zip.bin", {"state_dict": {"w": tensor}, "meta": ExecPayload(m("exec_zip.bin"))})
    save("subprocess_zip.pt", SubprocessPayload(m("subprocess_zip.pt")))
    save("system_legacy.pt", {"weight": tensor, "evil": SystemPayload(m("system_legacy.pt"))},
         _use_new_zipfile_serialization=False)
    raw = folder / "raw_pickle.pth"
    raw.write_bytes(pickle.dumps({"w": OpenPayload(m(raw.name))}, protocol=2))
    files[raw.name] = raw
    raw4 = folder / "raw_pickle4.pt"
    raw4.write_bytes(pickle.dumps(ExecPayload(m(raw4.name)), protocol=4))
    files[raw4.name] = raw4
    return files


def write_onnx_recipe(folder: Path, **overrides: Any) -> Path:
    """An ONNX-input recipe on digits saved as .npz: its runs never import torch or
    scikit-learn, so subprocess runs start fast. Exports the tiny model once, in-process."""
    import numpy as np
    import torch

    from compressor.data import load_split

    factory, weights = write_tiny_model(folder)
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_for_onnx", factory)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from compressor.export.onnx_export import export_onnx

    export_onnx(mod.build().eval(), folder / "tiny.onnx",
                [{"name": "input", "shape": [2, 1, 8, 8], "dtype": "float32", "dynamic": {}}])
    arrays = {}
    for split in ("train", "test"):
        ds = load_split("digits", split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = ds.inputs["input"], ds.labels
    np.savez(folder / "digits.npz", **arrays)
    r = tiny_recipe_dict(name="tinyonnx", **overrides)
    r["model"] = {"onnx": "tiny.onnx", "input_shape": [1, 1, 8, 8]}
    r["data"]["source"] = {"npz": "digits.npz"}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    del torch
    return path
