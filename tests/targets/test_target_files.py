"""Every targets/*.yaml loads and names a registered runtime; `targets list` shows each
with why it is unusable here; an unknown target name lists the valid ones."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.errors import RecipeError
from compressor.targets.registry import RUNTIMES, make_target, target_class
from compressor.targets.spec import TARGETS_DIR, load_target, load_target_file

TARGET_FILES = sorted(TARGETS_DIR.glob("*.yaml"))
EXPECTED = {"onnxruntime-cpu", "openvino-cpu", "openvino-cpu-bf16", "ort-mobile", "executorch-xnnpack", "tensorrt"}


def test_the_project_ships_every_target():
    assert EXPECTED <= {p.stem for p in TARGET_FILES}


@pytest.mark.parametrize("path", TARGET_FILES, ids=lambda p: p.stem)
def test_target_file_is_valid(path):
    spec = load_target_file(path)
    assert spec.name == path.stem and spec.runtime in RUNTIMES
    target = make_target(spec)  # options validated by the runtime's constructor
    reason = target_class(spec.runtime).unavailable_reason()
    assert reason is None or isinstance(reason, str) and reason
    if spec.quantization:
        from compressor.recipe.schema import QuantizeConfig

        QuantizeConfig.model_validate({**QuantizeConfig().model_dump(), **spec.quantization})
    assert target.describe()["runtime"] == spec.runtime


def test_targets_list_shows_each_target_and_why_not():
    _register()
    res = CliRunner().invoke(cli, ["targets", "list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in EXPECTED:
        assert name in res.output
    assert "tensorrt is not installed" in res.output or "yes" in res.output


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(RecipeError) as e:
        load_target("openvino-gpu")
    for name in EXPECTED:
        assert name in str(e.value)
    assert "unknown target 'openvino-gpu'" in str(e.value)


def test_unknown_target_in_a_recipe_fails_before_any_work(tmp_path, tt_model_dir):
    from tests.targets.targets_fixtures import write_recipe

    recipe = write_recipe(tmp_path, tt_model_dir, ["onnxruntime-cpu", "tensor-rt"])
    _register()
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 2
    assert "unknown target 'tensor-rt'; valid targets:" in res.output and "tensorrt" in res.output
    assert not (tmp_path / "run").exists()
