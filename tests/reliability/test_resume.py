"""kill -9 a real `compressor run` at named points; `--resume` redoes only unfinished
work and writes the same report (except timings, timestamps and `cached` flags)."""

from __future__ import annotations

import pytest

from tests.reliability.resume_harness import kill_and_resume
from tests.reliability_fixtures import write_onnx_recipe

KILL_POINTS = [
    "atomic:00-quantize.onnx",      # quantized model complete in its temp file, not renamed
    "written:step:00-quantize",     # quantized model on disk, not yet recorded
    "done:bench:baseline:*",        # one target result finished, the other not
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe

    root = tmp_path_factory.mktemp("resume")
    recipe = write_onnx_recipe(root / "model")
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=root / "reference")
    return recipe, report.to_json(), root


@pytest.mark.parametrize("point", KILL_POINTS)
@pytest.mark.slow
def test_kill_and_resume(reference, point):
    recipe, ref, root = reference
    out = root / point.replace(":", "_").replace("*", "x")
    r = kill_and_resume(recipe, out, point, ref)
    assert r["killed"], r
    assert r["resume_rc"] == 0, r["stderr"]
    assert r["identical_report"], r
    assert r["redone_finished"] == [], r
    assert r["corrupt_files"] == [], r
    # everything that finished before the kill was reused, nothing else
    assert len(r["reused"]) == r["finished_before_kill"], r
    if point.startswith("done:bench"):
        assert r["finished_before_kill"] >= 2, r  # the quantized model and one result
    assert not list(out.rglob(".*.tmp")) or point.startswith("atomic:")
