"""Fuzzing the recipe loader: random and mutated recipes give a Recipe or one clear
RecipeError, never a traceback (benchmarks/fuzz_recipes.py runs many more cases)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from compressor.errors import RecipeError
from compressor.recipe.loader import parse_recipe
from tests.recipe.fuzzing import check_one, data, mutated_recipes, real_recipes, to_yaml, yaml_text

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(yaml_text)
def test_random_yaml_text(text):
    check_one(text)


@FUZZ
@given(data)
def test_random_documents(doc):
    check_one(to_yaml(doc))


@FUZZ
@given(mutated_recipes())
@pytest.mark.slow
def test_mutated_real_recipes(doc):
    check_one(to_yaml(doc))


def test_real_recipes_are_valid():
    for doc in real_recipes():
        assert check_one(to_yaml(doc)) == "valid"


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['touch /tmp/x']",
    "name: !!python/object:os.system {}\n",
    "name: x\nmodel: !!python/name:os.system\n",
    "name: !!python/object/new:subprocess.Popen [[touch, /tmp/x]]\n",
])
def test_python_tags_are_refused(text, tmp_path):
    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "line " in msg and "python/" in msg, msg


def test_deep_nesting_is_one_error():
    with pytest.raises(RecipeError, match="line|nested"):
        parse_recipe("a: " + "[" * 5000 + "]" * 5000, "r.yaml")
