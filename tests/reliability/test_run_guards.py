"""Determinism, resource limits and cache invalidation of a run."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.pipeline import run_recipe
from compressor.recipe import load_recipe
from compressor.stepcache import StepCache
from tests.reliability_fixtures import write_onnx_recipe

_register()


@pytest.fixture(scope="module")
def onnx_recipe(tmp_path_factory):
    return write_onnx_recipe(tmp_path_factory.mktemp("guards"))


def test_same_seed_same_accuracy(onnx_recipe, tmp_path):
    r = load_recipe(onnx_recipe)
    a = run_recipe(r, recipe_path=onnx_recipe, run_dir=tmp_path / "a")
    b = run_recipe(r, recipe_path=onnx_recipe, run_dir=tmp_path / "b")
    acc = [(x.variant, x.accuracy.value, x.parity.max_abs_diff) for x in a.results]
    assert acc == [(x.variant, x.accuracy.value, x.parity.max_abs_diff) for x in b.results]
    assert len(acc) == 2 and all(x.status == "ok" for x in a.results + b.results)
    # the quantized models themselves are byte-identical
    assert (tmp_path / "a/artifacts/00-quantize.onnx").read_bytes() == (tmp_path / "b/artifacts/00-quantize.onnx").read_bytes()


def _with(recipe_path, tmp_path, **limits):
    d = yaml.safe_load(recipe_path.read_text())
    d["limits"] = limits
    d["model"]["onnx"] = str(recipe_path.parent / d["model"]["onnx"])
    d["data"]["source"]["npz"] = str(recipe_path.parent / d["data"]["source"]["npz"])
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.mark.parametrize("limits, expected", [
    ({"max_model_bytes": 1000}, "over limits.max_model_bytes"),
    ({"max_eval_bytes": 1000}, "over limits.max_eval_bytes"),
])
def test_limits_refuse_before_work(onnx_recipe, tmp_path, limits, expected):
    p = _with(onnx_recipe, tmp_path, **limits)
    res = CliRunner().invoke(cli, ["run", str(p), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 2 and expected in res.output and "Fix:" in res.output, res.output
    assert not (tmp_path / "run").exists()  # refused before any work


def test_memory_estimate_refuses(onnx_recipe, tmp_path, monkeypatch):
    import compressor.pipeline.limits as limits

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 10_000)
    p = _with(onnx_recipe, tmp_path)
    res = CliRunner().invoke(cli, ["run", str(p), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 2 and "of memory" in res.output and "is available" in res.output, res.output
    p = _with(onnx_recipe, tmp_path, check_memory=False)
    res = CliRunner().invoke(cli, ["run", str(p), "--out", str(tmp_path / "run2"), "-q"])
    assert res.exit_code == 0, res.output


def test_real_meminfo_is_read():
    from compressor.pipeline.limits import available_memory_bytes

    n = available_memory_bytes()
    assert n is not None and n > 10 * 2**20


def test_cache_invalidated_by_versions_and_tampering(tmp_path, monkeypatch):
    import compressor.stepcache as sc

    art = tmp_path / "artifacts" / "m.onnx"
    art.parent.mkdir()
    art.write_bytes(b"model")
    c = StepCache(tmp_path, reuse=True)
    key = c.key("step", config={"a": 1}, input="abc")
    c.put("step", key, {"x": 1}, [art])
    assert c.get("step", key)["data"] == {"x": 1}
    assert StepCache(tmp_path, reuse=True).key("step", config={"a": 2}, input="abc") != key
    monkeypatch.setattr(sc, "library_versions", lambda: {"onnxruntime": "99.0"})
    assert StepCache(tmp_path, reuse=True).key("step", config={"a": 1}, input="abc") != key
    monkeypatch.undo()
    art.write_bytes(b"changed")  # a file that no longer matches its record is not reused
    assert StepCache(tmp_path, reuse=True).get("step", key) is None
    assert StepCache(tmp_path, reuse=False).get("step", key) is None
