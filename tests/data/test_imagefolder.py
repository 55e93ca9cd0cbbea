"""``{imagefolder: DIR}``: real images (scikit-learn's digits written as PNG files) read back
with their class labels; bad layouts are one DataError line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compressor.data import load_split
from compressor.data.sources import _digits_arrays
from compressor.errors import DataError

CLASSES = ["one", "three", "zero"]  # sorted names; digit per name below
DIGIT = {"zero": 0, "one": 1, "three": 3}


def _write_digits(root: Path, per_class: int = 5, rgb: bool = False) -> dict[str, list[np.ndarray]]:
    """PNG files of real digits: root/<split>/<class>/<i>.png; returns the uint8 pixels written."""
    images, labels = _digits_arrays()
    written: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for name in CLASSES:
        picks = np.flatnonzero(labels == DIGIT[name])[: 2 * per_class]
        for split, idx in (("train", picks[:per_class]), ("test", picks[per_class:])):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i, k in enumerate(idx):
                px = np.round(images[k] / 16.0 * 255).astype(np.uint8)
                im = Image.fromarray(px, "L")
                (im.convert("RGB") if rgb else im).save(root / split / name / f"{i:03d}.png")
                written[split].append(px)
    return written


def test_imagefolder_reads_images_and_labels(tmp_path):
    written = _write_digits(tmp_path / "digits")
    (tmp_path / "digits" / "train" / "one" / "notes.txt").write_text("not an image: skipped")
    ds = load_split({"imagefolder": "digits"}, "train", base_dir=tmp_path)
    assert ds.inputs["input"].shape == (15, 1, 8, 8) and ds.inputs["input"].dtype == np.float32
    assert ds.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5  # class index = sorted folder name
    assert ds.meta["classes"] == CLASSES
    np.testing.assert_allclose(ds.inputs["input"][:, 0], np.stack(written["train"]) / 255.0, atol=1e-7)
    assert load_split({"imagefolder": str(tmp_path / "digits")}, "test", samples=4).labels.tolist() == [0] * 4


def test_imagefolder_rgb_and_a_class_missing_from_one_split(tmp_path):
    _write_digits(tmp_path / "d", per_class=2, rgb=True)
    for f in (tmp_path / "d" / "test" / "one").iterdir():
        f.unlink()
    (tmp_path / "d" / "test" / "one").rmdir()
    ds = load_split({"imagefolder": str(tmp_path / "d")}, "test")
    assert ds.inputs["input"].shape == (4, 3, 8, 8)
    assert ds.labels.tolist() == [1, 1, 2, 2]  # "three" keeps label 1, as in train


@pytest.mark.parametrize("case,match", [
    ("missing", "image folder .* does not exist"),
    ("no_split", "has no 'test' split folder \\(found: train\\)"),
    ("sizes", "differ in size: one/000.png is 8x8, zero/000.png is 9x8"),
    ("corrupt", "cannot read image .*broken.png"),
    ("empty", "has no images in class folders"),
])
def test_imagefolder_bad_layouts(tmp_path, case, match):
    root = tmp_path / "d"
    if case != "missing":
        _write_digits(root, per_class=1)
    if case == "no_split":
        import shutil

        shutil.rmtree(root / "test")
    elif case == "sizes":
        Image.new("L", (9, 8)).save(root / "test" / "zero" / "000.png")
    elif case == "corrupt":
        (root / "test" / "zero" / "broken.png").write_bytes(b"not a png")
    elif case == "empty":
        for f in (root / "test").rglob("*.png"):
            f.unlink()
    with pytest.raises(DataError, match=match) as e:
        load_split({"imagefolder": str(root)}, "test")
    assert "\n" not in str(e.value)


def test_recipe_with_an_imagefolder_validates(tmp_path):
    from click.testing import CliRunner

    from compressor.cli.main import _register, cli

    (tmp_path / "m.onnx").write_bytes(b"x")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nmodel: {onnx: m.onnx, input_shape: [1, 1, 8, 8]}\ndata: {source: {imagefolder: imgs}}\n")
    _register()
    res = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert res.exit_code == 2 and "data.source.imagefolder: imgs is not a folder" in res.output
    _write_digits(tmp_path / "imgs", per_class=1)
    res = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert res.exit_code == 0, res.output
