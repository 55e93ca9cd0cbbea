"""A recipe's files are found once, when a run starts (compressor.recipe.paths)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.errors import RecipeError
from compressor.recipe import load_recipe
from compressor.recipe.paths import anchor_factory, anchor_paths, split_factory
from tests.reliability_fixtures import write_tiny_recipe

_register()


def test_paths_resolve_against_the_recipe_folder_and_unknown_ones_stay_as_written(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    path = write_tiny_recipe(folder)
    monkeypatch.chdir(tmp_path)  # elsewhere: the recipe's relative files are not in the working folder
    r = anchor_paths(load_recipe(path), folder)
    assert r.model.factory == f"{folder / 'tiny.py'}:build" and r.model.weights == str(folder / "tiny.safetensors")
    assert load_recipe(path).model.weights == "tiny.safetensors"  # the loaded recipe itself is left alone
    # a file found nowhere keeps the user's spelling, so its error names it so
    assert anchor_factory("missing.py:build", folder) == "missing.py:build"
    assert anchor_factory("package.module:build", folder) == "package.module:build"  # a module, not a file
    (tmp_path / "tiny.py").write_text("def build():\n    pass\n")
    # the working folder wins where the file is there too (as before: resolve_path's rule)
    assert anchor_factory("tiny.py:build", folder) == "tiny.py:build"


def test_a_malformed_factory_spec_is_one_recipe_error():
    with pytest.raises(RecipeError, match="must look like 'path/to/file.py:function'"):
        split_factory("tiny.py")


def test_a_run_from_another_folder_finds_the_recipes_files(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    path = write_tiny_recipe(folder, steps=[])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "report.json").exists()
