"""Recipe variants from ``--grid PATH=V1,V2`` options: paths into the recipe, values as YAML.

``steps[0].prune.ratio=0.3,0.5`` sets ``ratio`` of the first step's ``prune`` mapping;
``steps[-1].quantize.calibration=minmax,percentile`` the last step's. Repeated options
multiply. Every variant is validated as a whole recipe here, before anything runs, so a
bad path or value is one RecipeError (exit 2) that names the option.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from compressor.errors import RecipeError
from compressor.recipe.loader import validation_messages
from compressor.recipe.schema import Recipe

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[-?\d+\])*)")
_INDEX = re.compile(r"\[(-?\d+)\]")


@dataclass(frozen=True)
class Axis:
    """One ``--grid`` option: a path (as keys and list indices) and its values."""

    text: str
    path: tuple[str | int, ...]
    values: tuple[Any, ...]
    option: str = "--grid"  # how errors name it (--space for a search)

    @property
    def short(self) -> str:
        """The last key of the path, for variant names (``ratio``, ``calibration``)."""
        return next(str(p) for p in reversed(self.path) if isinstance(p, str))


@dataclass(frozen=True)
class Variant:
    """One recipe of a sweep: its name (also its run folder), the values it sets, the recipe."""

    name: str
    settings: dict[str, Any]
    recipe: Recipe


def parse_axis(option: str) -> Axis:
    """``steps[0].prune.ratio=0.3,0.5`` -> Axis(path=("steps", 0, "prune", "ratio"), values=(0.3, 0.5))."""
    text, sep, raw = option.partition("=")
    text = text.strip()
    if not sep or not text or not raw.strip():
        raise RecipeError(f"--grid {option!r}: expected PATH=VALUE1,VALUE2,... (e.g. steps[0].prune.ratio=0.3,0.5)")
    path = parse_path(text, f"--grid {option!r}")
    values = []
    for item in raw.split(","):
        try:
            values.append(yaml.safe_load(item.strip()))
        except yaml.YAMLError:
            raise RecipeError(f"--grid {option!r}: value {item.strip()!r} is not valid YAML") from None
    if len(set(map(repr, values))) != len(values):
        raise RecipeError(f"--grid {option!r}: a value is given twice")
    return Axis(text, tuple(path), tuple(values))


def parse_path(text: str, where: str) -> tuple[str | int, ...]:
    """``steps[0].prune.ratio`` -> ("steps", 0, "prune", "ratio"); ``where`` names the option in errors."""
    path: list[str | int] = []
    for part in text.split("."):
        m = _PART.fullmatch(part)
        if not m:
            raise RecipeError(f"{where}: {part!r} is not a key or key[index]")
        path.append(m.group(1))
        path += [int(i) for i in _INDEX.findall(m.group(2))]
    return tuple(path)


def set_value(data: Any, axis: Axis, value: Any) -> None:
    """Set ``value`` at ``axis.path`` in ``data`` (the recipe as written: unset keys are absent,
    so a missing mapping is made; the schema, ``extra="forbid"``, then rejects a misspelt key).
    A list index must exist, and a step's kind must be the one at that position."""
    node = data
    for depth, key in enumerate(axis.path):
        here = _where(axis.path[:depth])
        last = depth == len(axis.path) - 1
        if isinstance(key, int):
            if not isinstance(node, list) or not -len(node) <= key < len(node):
                size = f"a list of {len(node)}" if isinstance(node, list) else "not a list"
                raise RecipeError(f"{axis.option} {axis.text}: index [{key}] is out of range ({here} is {size})")
        elif not isinstance(node, dict):
            raise RecipeError(f"{axis.option} {axis.text}: {here} is not a mapping")
        elif key not in node and not last:
            if axis.path[depth - 1:depth] and isinstance(axis.path[depth - 1], int):  # steps[i].<kind>
                raise RecipeError(f"{axis.option} {axis.text}: {here} is a {', '.join(map(str, node))} step, not {key}")
            node[key] = {}
        if last:
            node[key] = value
        else:
            node = node[key]


def validate_variant(data: dict[str, Any], settings: dict[str, Any], option: str = "--grid") -> Recipe:
    """The recipe ``data`` validated; RecipeError naming the settings when it is not valid."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        given = ", ".join(f"{k}={v}" for k, v in settings.items())
        raise RecipeError(f"{option} {given}: {validation_messages(e, {}, 'variant')[0]}") from None


def _where(path: tuple[str | int, ...]) -> str:
    out = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return out or "the recipe"


def _fmt(value: Any) -> str:
    text = str(value).rstrip("/").rsplit("/", 1)[-1]  # a path: its file name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "x"


def expand(recipe: Recipe, axes: list[Axis]) -> list[Variant]:
    """Every combination of the axes' values, each a validated recipe (the first axis varies slowest).

    Raises RecipeError naming the option and value when a variant is not a valid recipe.
    """
    if not axes:
        raise RecipeError("a sweep needs at least one --grid PATH=VALUES")
    if len({a.path for a in axes}) != len(axes):
        raise RecipeError("--grid: the same path is given twice")
    base = recipe.model_dump(mode="json", exclude_unset=True)
    variants = []
    for combo in itertools.product(*(a.values for a in axes)):
        data = copy.deepcopy(base)
        for axis, value in zip(axes, combo):
            set_value(data, axis, value)
        name = "-".join(f"{a.short}{_fmt(v)}" for a, v in zip(axes, combo))
        settings = {a.text: v for a, v in zip(axes, combo)}
        variants.append(Variant(name, settings, validate_variant(data, settings)))
    if len({v.name for v in variants}) != len(variants):  # e.g. values 0.5 and "0.5"
        variants = [Variant(f"v{i:02d}-{v.name}", v.settings, v.recipe) for i, v in enumerate(variants)]
    return variants
