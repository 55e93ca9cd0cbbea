"""A built wheel works without the checkout: its targets, recipes, examples and schemas
are package data, found from the installed package in another folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "compressor", "targets", "recipes", "examples"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the checkout stays clean), installed into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "weights", "data", "builtin")
    for name in SOURCES:
        p = ROOT / name
        (shutil.copytree(p, src / name, ignore=ignore) if p.is_dir() else shutil.copy(p, src / name))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    wheel = next((tmp / "dist").glob("compressor-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("targets/onnxruntime-cpu.yaml", "recipes/quickstart.yaml", "examples/fashion_cnn.py",
              "examples/pretrained/fashion_cnn-seed0.safetensors"):
        assert f"compressor/builtin/{f}" in names, f
    assert "compressor/schemas/report.schema.json" in names
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(tmp / "site"), str(wheel)],
                   check=True, capture_output=True, text=True)
    return tmp / "site"


def _compressor(site: Path, cwd: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(site)}
    res = subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_installed_wheel_finds_its_targets_and_recipes(installed: Path, tmp_path: Path) -> None:
    where = _compressor(installed, tmp_path, "--version")   # the installed copy, not the checkout, is imported
    code = "import compressor.utils.builtin as b; print(b.builtin_dir('targets'))"
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)},
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == str(installed / "compressor" / "builtin" / "targets"), (where, res.stdout)
    table = _compressor(installed, tmp_path, "targets", "list")
    for name in (p.stem for p in (ROOT / "targets").glob("*.yaml")):
        assert name in table
    assert "quickstart" in _compressor(installed, tmp_path, "recipe", "list")
    _compressor(installed, tmp_path, "recipe", "copy", "quickstart")
    assert (tmp_path / "examples" / "weights" / "fashion_cnn.safetensors").read_bytes() == \
        (ROOT / "examples" / "pretrained" / "fashion_cnn-seed0.safetensors").read_bytes()
    resolved = _compressor(installed, tmp_path, "validate", "recipes/quickstart.yaml")
    assert "onnxruntime-cpu" in resolved
