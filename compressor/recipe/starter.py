"""Recipes to start from: the built-in ones (copied with the example files they use) and
a new recipe for a user's own model.

>>> sorted(builtin_recipes())[:2]
['gru', 'lstm']
>>> print(new_recipe("mynet", onnx="model.onnx", data="digits").splitlines()[0])
# compressor recipe for mynet: `compressor validate mynet.yaml`, then `compressor run mynet.yaml`
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from compressor.errors import RecipeError
from compressor.recipe.loader import parse_recipe
from compressor.utils.builtin import builtin_dir

_EXAMPLE_FILE = re.compile(r"\bexamples/(\w+)\.py\b")
_EXAMPLE_WEIGHTS = re.compile(r"\bexamples/weights/(\w+)\.safetensors\b")
_SIBLING_IMPORT = re.compile(r"^from (\w+) import", re.MULTILINE)   # e.g. `from family_training import ...`


def builtin_recipes() -> dict[str, Path]:
    """Name -> file of every built-in recipe (``recipes/*.yaml``)."""
    return {p.stem: p for p in sorted(builtin_dir("recipes").glob("*.yaml"))}


def recipe_description(path: Path) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return str(data.get("description") or "")


def _example_files(text: str) -> list[Path]:
    """The example modules ``text`` names, with the sibling modules they import."""
    examples = builtin_dir("examples")
    todo, found = list(dict.fromkeys(_EXAMPLE_FILE.findall(text))), {}
    while todo:
        name = todo.pop()
        path = examples / f"{name}.py"
        if name in found or not path.is_file():
            continue
        found[name] = path
        todo += _SIBLING_IMPORT.findall(path.read_text(encoding="utf-8"))
    return [found[k] for k in sorted(found)]


def _shipped_weights(name: str) -> Path | None:
    """``examples/pretrained/<name>-seed0.safetensors`` when its recorded sha256 matches."""
    path = builtin_dir("examples") / "pretrained" / f"{name}-seed0.safetensors"
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path if digest == json.loads(meta.read_text(encoding="utf-8")).get("sha256") else None


def copy_recipe(name: str, dest: Path, force: bool = False) -> tuple[list[Path], list[str]]:
    """Copy built-in recipe ``name`` to ``dest/recipes/`` with the example files it names
    (``dest/examples/``) and the trained weights that ship with the package, so that
    ``compressor run recipes/<name>.yaml`` works from ``dest``. Returns (files written,
    notes on what it still needs). Refuses to overwrite a different file unless ``force``."""
    recipes = builtin_recipes()
    if name not in recipes:
        raise RecipeError(f"unknown built-in recipe {name!r}; built-in recipes: {', '.join(recipes)}",
                          hint="run `compressor recipe list`")
    text = recipes[name].read_text(encoding="utf-8")
    plan = [(recipes[name], dest / "recipes" / f"{name}.yaml")]
    plan += [(p, dest / "examples" / p.name) for p in _example_files(text)]
    notes = []
    for w in dict.fromkeys(_EXAMPLE_WEIGHTS.findall(text)):
        shipped = _shipped_weights(w)
        if shipped is not None:
            plan.append((shipped, dest / "examples" / "weights" / f"{w}.safetensors"))
        else:
            notes.append(f"examples/weights/{w}.safetensors does not ship with the package: train it from a "
                         "source checkout (`make weights-all`) or point `weights:` at your own")
    clash = [d for s, d in plan if d.exists() and d.read_bytes() != s.read_bytes()]
    if clash and not force:
        raise RecipeError(f"{clash[0]} exists and differs from the built-in copy", hint="pass --force to overwrite it")
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [d for _, d in plan], notes


def _data_source(data: str) -> str | dict[str, Any]:
    """``--data``: a built-in name, a .npz file, an image folder or ``file.py:function``."""
    if data.endswith(".npz"):
        return {"npz": data}
    if ":" in data and data.split(":", 1)[0].endswith(".py"):
        return {"factory": data}
    if Path(data).is_dir():
        return {"imagefolder": data}
    return data


def new_recipe(name: str, *, factory: str | None = None, weights: str | None = None, onnx: str | None = None,
               input_shape: list[int] | None = None, data: str = "fashion-mnist", metric: str = "top1",
               targets: list[str] | None = None, max_accuracy_drop: float = 1.0) -> str:
    """A starter recipe (YAML text) for a user's model: ``factory`` (+ ``weights``) or
    ``onnx``; static INT8 quantization; an accuracy gate. Validated against the recipe
    schema before it is returned, so a bad argument is a RecipeError, never a bad file."""
    model: dict[str, Any] = {"onnx": onnx} if onnx else {"factory": factory}
    if weights:
        model["weights"] = weights
    if input_shape:
        model["input_shape"] = list(input_shape)
    recipe = {
        "name": name,
        "description": f"{name}: FP32 vs static INT8",
        "model": model,
        "data": {"source": _data_source(data), "metric": metric,
                 "calibration": {"split": "train", "samples": 512}, "evaluation": {"split": "test"}},
        "steps": [{"quantize": {"mode": "static", "calibration": "minmax", "per_channel": True}}],
        "targets": targets or ["onnxruntime-cpu"],
        "gates": {"max_accuracy_drop": max_accuracy_drop},
    }
    text = (f"# compressor recipe for {name}: `compressor validate {name}.yaml`, then `compressor run {name}.yaml`\n"
            "# every key: `compressor recipe schema`; step options: docs/quantization.md, docs/pruning.md\n"
            + yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None))
    parse_recipe(text, f"the new recipe {name}")
    return text
