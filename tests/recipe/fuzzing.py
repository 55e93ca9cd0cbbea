"""Hypothesis strategies for fuzzing the recipe loader (shared by the tests and
benchmarks/fuzz_recipes.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from compressor.errors import RecipeError
from compressor.recipe.loader import parse_recipe
from compressor.recipe.schema import Recipe

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "<fuzz>"


def real_recipes() -> list[dict[str, Any]]:
    """The recipes shipped in recipes/ plus a tiny one, as plain data."""
    from tests.reliability_fixtures import tiny_recipe_dict

    out = [tiny_recipe_dict()]
    for p in sorted((ROOT / "recipes").glob("*.yaml")):
        out.append(yaml.safe_load(p.read_text()))
    return out


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["static", "dynamic", "fashion-mnist", "digits", "onnxruntime-cpu", "quantize", "", "~",
                     "1e999", "-.inf", ".nan", "0x1F", "yes", "null", "\u202e\u0000", "名前", "🙂" * 5]),
)
data = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                 st.dictionaries(st.one_of(st.text(max_size=8), scalars), c,
                                                                 max_size=4)), max_leaves=20)
yaml_tokens = st.sampled_from(["name:", "model:", "steps:", "- ", "  ", "\n", "{", "}", "[", "]", ":", ",", "&a",
                               "*a", "!!str", "!!python/object:os.system", "<<: *a", "? ", "|", ">", "'", '"',
                               "#", "---", "...", "%YAML 1.1", "\t", "quantize", "{mode: static}", "1e99", "\\x00"])
yaml_text = st.lists(st.one_of(yaml_tokens, st.text(max_size=6)), max_size=40).map("".join)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated_recipes(draw: st.DrawFn) -> Any:
    """A real recipe with 1-4 mutations: drop/rename keys, wrong types, deep nesting, huge numbers, unicode."""
    doc = copy.deepcopy(draw(st.sampled_from(real_recipes())))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["drop", "rename", "retype", "nest", "huge", "unicode", "dup-list"]))
        if not path:
            if op == "retype":
                doc = draw(data)
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(key)
        elif op == "retype":
            parent[key] = draw(data)
        elif op == "nest":
            value: Any = parent[key]
            for _ in range(draw(st.integers(1, 200))):
                value = draw(st.sampled_from([[value], {"k": value}]))
            parent[key] = value
        elif op == "huge":
            parent[key] = draw(st.sampled_from([10**400, -(10**30), 1e308 * 10, 2**63, -1, 0]))
        elif op == "unicode":
            parent[key] = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
        elif op == "dup-list" and isinstance(parent[key], list):
            parent[key] = parent[key] * 3
        paths = _paths(doc)
    return doc


def to_yaml(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, RecursionError):
        return repr(doc)  # still a document to throw at the loader


def check_one(text: str) -> str:
    """Parse ``text``; return "valid" or "error", raise AssertionError for anything else.

    Anything but a Recipe or a RecipeError (one line, naming a location) is a bug.
    """
    try:
        r = parse_recipe(text, SOURCE)
    except RecipeError as e:
        msg = str(e)
        assert "\n" not in msg, f"multi-line error: {msg!r}"
        assert msg.startswith(SOURCE) or "line " in msg, f"error names no location: {msg!r}"
        return "error"
    assert isinstance(r, Recipe)
    return "valid"
