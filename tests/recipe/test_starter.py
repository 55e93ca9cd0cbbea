"""`compressor recipe new` writes a starter recipe for a user's model; `recipe copy` a built-in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.errors import RecipeError
from compressor.recipe import load_recipe
from compressor.recipe.starter import builtin_recipes, copy_recipe, new_recipe

ROOT = Path(__file__).resolve().parents[2]
FACTORY = f"{ROOT / 'examples' / 'fashion_cnn.py'}:build"
WEIGHTS = str(ROOT / "examples" / "pretrained" / "fashion_cnn-seed0.safetensors")


def test_recipe_new_writes_a_valid_recipe(cli, tmp_path: Path) -> None:
    out = tmp_path / "mynet.yaml"
    res = cli("recipe", "new", "mynet", "--factory", FACTORY, "--weights", WEIGHTS, "--input-shape", "1,1,28,28",
              "--data", "fashion-mnist", "--target", "onnxruntime-cpu", "--target", "openvino-cpu", "--out", str(out))
    assert res.exit_code == 0, res.output
    recipe = load_recipe(out)
    assert recipe.model.factory == FACTORY and recipe.model.input_shape == [1, 1, 28, 28]
    assert recipe.targets == ["onnxruntime-cpu", "openvino-cpu"] and recipe.step_kinds() == ["quantize"]
    assert cli("validate", str(out)).exit_code == 0   # the referenced files exist and parse
    again = cli("recipe", "new", "mynet", "--onnx", "m.onnx", "--out", str(out))
    assert again.exit_code == 2 and "exists" in again.output


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"factory": FACTORY}, "input_shape"),                                  # a torch model needs its input shape
    ({"onnx": "m.onnx", "weights": "w.safetensors"}, "'weights' goes with 'factory'"),
    ({"onnx": "m.onnx", "metric": "bleu"}, "metric"),
])
def test_recipe_new_rejects_what_the_schema_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        new_recipe("bad", **kwargs)


def test_recipe_new_maps_data_sources(tmp_path: Path) -> None:
    assert "source: {npz: d.npz}" in new_recipe("a", onnx="m.onnx", data="d.npz")
    assert "source: {factory: 'data.py:load'}" in new_recipe("a", onnx="m.onnx", data="data.py:load")
    assert f"source: {{imagefolder: {tmp_path}}}" in new_recipe("a", onnx="m.onnx", data=str(tmp_path))


def test_recipe_copy_brings_the_example_files(tmp_path: Path) -> None:
    assert {"quickstart", "smollm2", "vae"} <= set(builtin_recipes())
    written, notes = copy_recipe("quickstart", tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "recipes/quickstart.yaml", "examples/fashion_cnn.py", "examples/weights/fashion_cnn.safetensors"}
    assert notes == []
    _, notes = copy_recipe("mlp", tmp_path)          # its weights are trained, not shipped: say so
    assert (tmp_path / "examples" / "family_training.py").is_file() and "mlp.safetensors" in notes[0]
    (tmp_path / "recipes" / "quickstart.yaml").write_text("changed")
    with pytest.raises(RecipeError, match="differs"):
        copy_recipe("quickstart", tmp_path)
    with pytest.raises(RecipeError, match="unknown built-in recipe"):
        copy_recipe("nope", tmp_path)
