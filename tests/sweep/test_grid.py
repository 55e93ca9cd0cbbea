"""--grid parsing and variant validation: no Ray, no model run (fast)."""

from __future__ import annotations

import pytest

from compressor.errors import RecipeError
from compressor.recipe import load_recipe
from compressor.sweep import expand, parse_axis


def test_axes_multiply_and_set_paths(tiny_recipe):
    r = load_recipe(tiny_recipe)
    vs = expand(r, [parse_axis("steps[0].quantize.calibration=minmax,percentile"),
                    parse_axis("benchmark.iterations=10,30")])
    assert [v.name for v in vs] == ["calibrationminmax-iterations10", "calibrationminmax-iterations30",
                                    "calibrationpercentile-iterations10", "calibrationpercentile-iterations30"]
    assert [v.recipe.steps[-1].quantize.calibration for v in vs] == ["minmax", "minmax", "percentile", "percentile"]
    assert [v.recipe.benchmark.iterations for v in vs] == [10, 30, 10, 30]
    # only what the recipe (or the grid) sets counts as set: target defaults still fill in the rest
    assert vs[0].recipe.steps[-1].quantize.model_fields_set == r.steps[-1].quantize.model_fields_set
    assert r.steps[-1].quantize.calibration == "minmax"  # the base recipe is untouched


def test_negative_index_is_the_last_step(tiny_recipe):
    v = expand(load_recipe(tiny_recipe), [parse_axis("steps[-1].quantize.per_channel=true,false")])
    assert [x.recipe.steps[0].quantize.per_channel for x in v] == [True, False]


@pytest.mark.parametrize("option, message", [
    ("steps[3].quantize.calibration=minmax", "index [3] is out of range (steps is a list of 1)"),
    ("steps[0].prune.ratio=0.5", "steps[0] is a quantize step, not prune"),
    ("steps[0].quantize.calibraton=minmax", "calibraton: unknown key"),
    ("steps[0].quantize.calibration=minmax,sometimes", "steps[0].quantize.calibration=sometimes"),
    ("benchmark.iterations=0", "benchmark.iterations"),
    ("no_such_key=1", "no_such_key: unknown key"),
    ("steps[0].quantize.calibration", "expected PATH=VALUE1,VALUE2"),
    ("steps[0]..calibration=minmax", "is not a key or key[index]"),
    ("steps[0].quantize.calibration=minmax,minmax", "a value is given twice"),
])
def test_bad_grid_is_one_error(tiny_recipe, option, message):
    with pytest.raises(RecipeError) as e:
        expand(load_recipe(tiny_recipe), [parse_axis(option)])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_bad_grid_exits_2_before_anything_runs(cli, tiny_recipe, tmp_path):
    out = tmp_path / "sweep"
    res = cli("sweep", tiny_recipe, "--grid", "steps[0].quantize.calibration=minmax,percentile",
              "--grid", "steps[2].quantize.per_channel=true", "--out", out)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: --grid steps[2].quantize.per_channel: index [2] is out of range (steps is a list of 1)"]
    assert not out.exists()


def test_cli_resume_needs_out(cli, tiny_recipe):
    res = cli("sweep", tiny_recipe, "--grid", "steps[0].quantize.calibration=minmax", "--resume")
    assert res.exit_code == 2 and "--resume needs --out" in res.output
