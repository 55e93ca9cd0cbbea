"""A search space from ``--space PATH=SPEC`` options: the grid's paths, with ranges.

``SPEC`` is ``float:LO:HI`` (``float:LO:HI:log`` samples on a log scale), ``int:LO:HI``
(``int:LO:HI:STEP``), or values as in ``--grid`` (``minmax,percentile``: a categorical
choice). Every bound and every choice is validated as a recipe before anything runs.

    >>> d = parse_dimension("steps[0].prune.ratio=float:0.2:0.8")
    >>> (d.kind, d.low, d.high, d.axis.path)
    ('float', 0.2, 0.8, ('steps', 0, 'prune', 'ratio'))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from compressor.errors import RecipeError
from compressor.recipe.schema import Recipe
from compressor.sweep.grid import Axis, Variant, parse_axis, parse_path, set_value, validate_variant


@dataclass(frozen=True)
class Dimension:
    """One ``--space`` option: a path and what values it may take."""

    axis: Axis  # the path; for a categorical dimension also its choices (axis.values)
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    step: int | None = None
    log: bool = False

    @property
    def name(self) -> str:
        """The Optuna parameter name: the path as written."""
        return self.axis.text

    def probes(self) -> tuple[Any, ...]:
        """The values checked before the search starts: both bounds, or every choice."""
        return (self.low, self.high) if self.kind != "categorical" else self.axis.values

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial (the stored one on a resumed trial)."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.axis.values))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.axis.values)}"
        extra = " (log)" if self.log else f" step {self.step}" if self.step else ""
        return f"{self.name} {self.kind} [{self.low}, {self.high}]{extra}"


def _number(text: str, kind: str, option: str) -> float:
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise RecipeError(f"--space {option!r}: {text!r} is not a{'n int' if kind == 'int' else ' float'}") from None


def parse_dimension(option: str) -> Dimension:
    """``PATH=float:LO:HI[:log]``, ``PATH=int:LO:HI[:STEP]`` or ``PATH=V1,V2,...`` (categorical)."""
    text, sep, raw = option.partition("=")
    kind, _, rest = raw.strip().partition(":")
    if kind not in ("float", "int"):
        axis = parse_axis(option)
        if len(axis.values) < 2:
            raise RecipeError(f"--space {option!r}: a categorical dimension needs at least 2 values")
        return Dimension(Axis(axis.text, axis.path, axis.values, "--space"), "categorical")
    path = parse_path(text.strip(), f"--space {option!r}")
    parts = rest.split(":")
    if len(parts) not in (2, 3):
        raise RecipeError(f"--space {option!r}: expected {kind}:LOW:HIGH" + ("[:log]" if kind == "float" else "[:STEP]"))
    low, high = (_number(p, kind, option) for p in parts[:2])
    if not low < high:
        raise RecipeError(f"--space {option!r}: LOW must be below HIGH")
    log, step = False, None
    if len(parts) == 3:
        if kind == "float" and parts[2] == "log":
            log = low > 0 or _fail(option, "a log range needs LOW > 0")
        elif kind == "int" and parts[2].isdigit() and int(parts[2]) > 0:
            step = int(parts[2])
        else:
            _fail(option, f"{parts[2]!r}: expected " + ("log" if kind == "float" else "a positive STEP"))
    return Dimension(Axis(text.strip(), path, (), "--space"), kind, low, high, step, log)


def _fail(option: str, why: str) -> bool:
    raise RecipeError(f"--space {option!r}: {why}")


def space_variant(recipe: Recipe, dims: list[Dimension], params: dict[str, Any], name: str) -> Variant:
    """The recipe with each dimension's value set (RecipeError naming them when invalid)."""
    data = copy.deepcopy(recipe.model_dump(mode="json", exclude_unset=True))
    for d in dims:
        set_value(data, d.axis, params[d.name])
    settings = {d.name: params[d.name] for d in dims}
    return Variant(name, settings, validate_variant(data, settings, "--space"))


def check_space(recipe: Recipe, dims: list[Dimension]) -> None:
    """Every bound and choice of every dimension, the others at their first value, must make
    a valid recipe: a bad path or value is one RecipeError before anything runs."""
    if not dims:
        raise RecipeError("a search needs at least one --space PATH=SPEC")
    if len({d.axis.path for d in dims}) != len(dims):
        raise RecipeError("--space: the same path is given twice")
    first = {d.name: d.probes()[0] for d in dims}
    for d in dims:
        for value in d.probes():
            space_variant(recipe, dims, {**first, d.name: value}, "check")
