"""Recipe schema and loader: every shipped recipe/target loads; errors are located."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.errors import RecipeError
from compressor.recipe import load_recipe, parse_recipe
from compressor.recipe.schema import recipe_json_schema
from compressor.targets.spec import TARGETS_DIR, load_target_file

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
TARGET_FILES = sorted(TARGETS_DIR.glob("*.yaml"))


def test_shipped_files_exist():
    assert any(p.name == "quickstart.yaml" for p in RECIPES)
    assert any(p.name == "onnxruntime-cpu.yaml" for p in TARGET_FILES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name
    assert recipe.targets


@pytest.mark.parametrize("path", TARGET_FILES, ids=lambda p: p.name)
def test_every_target_file_validates(path):
    spec = load_target_file(path)
    assert spec.name == path.stem


MINIMAL = """\
name: r
model: {factory: m.py:build, input_shape: [1, 3]}
data:
  source: digits
steps:
  - quantize: {mode: static}
"""


def test_defaults_are_filled_in():
    r = parse_recipe(MINIMAL)
    assert r.targets == ["onnxruntime-cpu"]
    assert r.data.calibration.samples == 512
    q = r.steps[0].quantize
    assert (q.activation_type, q.weight_type, q.per_channel) == ("uint8", "int8", True)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("mode: static", "mdoe: static", "r.yaml:6: steps[0].quantize.mdoe: unknown key"),
        ("source: digits", "sourc: digits", "data.sourc: unknown key"),
        ("- quantize:", "- quantise:", "r.yaml:6: steps[0]: each step is a one-key mapping"),
        ("[1, 3]", "[1, 0]", "input_shape dimensions must be >= 1"),
        ("mode: static", "mode: turbo", "steps[0].quantize.mode: Input should be 'static' or 'dynamic'"),
        ("name: r", "name: 'bad name!'", "r.yaml:1: name: String should match pattern"),
    ],
)
def test_errors_name_key_path_and_line(old, new, expected):
    with pytest.raises(RecipeError) as e:
        parse_recipe(MINIMAL.replace(old, new), "r.yaml")
    assert expected in str(e.value)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [", "invalid YAML at line 1"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("name: r\nname: s\n", "duplicate key 'name'"),
        ("!!python/object:os.system {}", "tag .* is not allowed"),
        ("a: !!python/object/apply:os.system [echo]", "is not allowed"),
        ("a: !!binary aGk=", "name: required key is missing"),
    ],
)
def test_malformed_yaml(text, expected):
    with pytest.raises(RecipeError, match=expected):
        parse_recipe(text)


def test_model_needs_exactly_one_source():
    text = MINIMAL.replace("model: {factory: m.py:build, input_shape: [1, 3]}", "model: {input_shape: [1, 3]}")
    with pytest.raises(RecipeError, match="exactly one of 'factory'"):
        parse_recipe(text)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_json_schema_forbids_unknown_keys():
    schema = recipe_json_schema()
    assert schema["additionalProperties"] is False
    assert {"name", "model", "data"} <= set(schema["required"])
