"""The files a recipe names, found once: when a run starts, :func:`anchor_paths` resolves every
path of the model (weights, ONNX, Hugging Face folder, GGUF, factory file), of a text or
factory data source and of a distillation teacher or student, so the code that later opens
them takes them as they stand and never needs the recipe's folder again.

A relative path resolves as :func:`compressor.utils.paths.resolve_path` says: from the working
folder when the file is there, else from the recipe's folder; a path found in neither stays as
written, so the error that reports it names it as the user wrote it. (The ``npz`` and
``imagefolder`` data sources keep their own rule, recipe folder first: ``compressor.data``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.errors import RecipeError
from compressor.recipe.schema import Recipe
from compressor.utils.paths import resolve_path

_MODEL_FILES = ("weights", "onnx", "hf", "gguf")


def split_factory(spec: str) -> tuple[str, str]:
    """``'path/to/file.py:function'`` or ``'package.module:function'`` -> (module, function)."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module or not attr:
        raise RecipeError(f"factory {spec!r} must look like 'path/to/file.py:function' or 'package.module:function'")
    return module, attr


def anchor_factory(spec: str, base_dir: Path | None) -> str:
    """The factory spec with its ``.py`` file resolved (a package module is left alone)."""
    module, sep, attr = spec.rpartition(":")
    if not sep or not module.endswith(".py"):
        return spec  # a package module, or malformed: split_factory says so where it is used
    return f"{resolve_path(module, base_dir)}:{attr}"


def _anchor(value: str | None, base_dir: Path | None) -> str | None:
    return None if value is None else str(resolve_path(value, base_dir))


def _module_source(src: Any, base_dir: Path | None) -> Any:
    """A distillation teacher/student ``{factory, weights}`` (or a keyword such as 'auto')."""
    if isinstance(src, str):
        return src
    return src.model_copy(update={"factory": anchor_factory(src.factory, base_dir),
                                  "weights": _anchor(src.weights, base_dir)})


def anchor_paths(recipe: Recipe, base_dir: Path | None) -> Recipe:
    """A copy of ``recipe`` whose file paths are resolved against ``base_dir`` (the recipe's folder)."""
    m = recipe.model
    model = m.model_copy(update={**{k: _anchor(getattr(m, k), base_dir) for k in _MODEL_FILES},
                                 "factory": None if m.factory is None else anchor_factory(m.factory, base_dir)})
    data = recipe.data
    src = data.source
    if isinstance(src, dict) and ("text" in src or "factory" in src):
        src = {**src, **({"text": _anchor(src["text"], base_dir)} if isinstance(src.get("text"), str) else {}),
               **({"factory": anchor_factory(src["factory"], base_dir)} if isinstance(src.get("factory"), str)
                  else {})}
        data = data.model_copy(update={"source": src})
    steps = []
    for kind, step in zip(recipe.step_kinds(), recipe.steps):
        cfg = getattr(step, kind)
        if kind == "distill":
            cfg = cfg.model_copy(update={"teacher": _module_source(cfg.teacher, base_dir),
                                         "student": _module_source(cfg.student, base_dir)})
            step = step.model_copy(update={kind: cfg})
        steps.append(step)
    return recipe.model_copy(update={"model": model, "data": data, "steps": steps})
