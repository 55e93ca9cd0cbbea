"""`compressor validate`: checks of a recipe's references that need no code execution."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import RecipeError
from compressor.models.factory import check_factory
from compressor.pipeline.plan import check_target_quantization, resolve_targets
from compressor.recipe.paths import anchor_paths
from compressor.recipe.schema import Recipe
from compressor.utils.paths import resolve_path


def check_references(recipe: Recipe, base_dir: Path | None) -> None:
    """Files exist, factories parse, targets are known. Imports no user code."""
    anchored = anchor_paths(recipe, base_dir)
    m = anchored.model
    if m.factory:
        check_factory(m.factory)
    for key in ("weights", "onnx"):
        value = getattr(m, key)
        if value is not None and not Path(value).exists():
            raise RecipeError(f"model.{key}: {value} does not exist",
                              hint="for the examples, run `make weights-all` to train and cache them" if key == "weights" else None)
    src = recipe.data.source
    if isinstance(src, dict) and "npz" in src and not resolve_path(src["npz"], base_dir).exists():
        raise RecipeError(f"data.source.npz: {src['npz']} does not exist")
    if isinstance(src, dict) and "imagefolder" in src and not resolve_path(src["imagefolder"], base_dir).is_dir():
        raise RecipeError(f"data.source.imagefolder: {src['imagefolder']} is not a folder")
    if isinstance(src, dict) and "factory" in src:
        check_factory(anchored.data.source["factory"])
    check_target_quantization(recipe, resolve_targets(recipe, base_dir))
