"""A real 2-variant sweep on an in-process local Ray (1 CPU + one `bench` slot)."""

from __future__ import annotations

import json

import pytest

from compressor import api
from compressor.errors import RecipeError
from compressor.report.model import load_report

ray = pytest.importorskip("ray")

GRID = ["steps[0].quantize.calibration=minmax,percentile"]
NAMES = ["calibrationminmax", "calibrationpercentile"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=1, resources={"bench": 1}, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _attempts(out, name):
    return [json.loads(x)["phase"] for x in (out / "variants" / name / "sweep_attempts.jsonl").read_text().splitlines()]


@pytest.mark.slow  # ~25 s on 2 loaded cores: 2 variants twice (resume) + the merged report
def test_sweep_merges_variants_and_resumes(local_ray, tiny_recipe, tmp_path, cli):
    out = tmp_path / "sweep"
    report = api.sweep(tiny_recipe, GRID, out=out)
    # every variant x (baseline, compressed) x target, each a real measurement with its node
    assert sorted(r.variant for r in report.results) == sorted(f"{n}/{v}" for n in NAMES for v in ("baseline", "compressed"))
    assert all(r.status == "ok" and r.latency_ms and r.host for r in report.results)
    sweep = report.sweep
    assert [v["status"] for v in sweep["variants"]] == ["ok", "ok"]
    # the variants differ only in the quantize step: the second reused the first's baseline export
    assert sweep["shared_steps_reused"] >= 1
    assert sweep["pareto"] and all(set(f) <= {r.variant for r in report.results} for f in sweep["pareto"].values())
    # gates compare each compressed row with the baseline of its own variant
    drops = [g for g in report.gates if g.name == "max_accuracy_drop"]
    assert sorted(g.detail.split("@")[0] for g in drops) == sorted(f"{n}/compressed" for n in NAMES)
    assert sweep["best"]["onnxruntime-cpu"]["variant"] in {f"{n}/compressed" for n in NAMES}
    assert "## Sweep" in (out / "report.md").read_text() and (out / "report.html").is_file()
    assert load_report(out).sweep == json.loads(json.dumps(sweep))  # round-trips through report.json
    # compressor check works on the merged report
    res = cli("check", out / "report.json")
    assert res.exit_code == 0, res.output

    # a driver that died after one variant finished: --resume redoes only the other one
    (out / "variants" / NAMES[1] / "report.json").unlink()
    before = _attempts(out, NAMES[0])
    again = api.sweep(tiny_recipe, GRID, out=out, resume=True)
    assert _attempts(out, NAMES[0]) == before == ["prepare", "benchmark"]
    assert _attempts(out, NAMES[1]) == ["prepare", "benchmark", "prepare", "benchmark"]
    assert len(again.results) == len(report.results)  # nothing counted twice
    # the same folder without --resume, or with other variants, is refused
    with pytest.raises(RecipeError, match="already holds a sweep"):
        api.sweep(tiny_recipe, GRID, out=out)
    with pytest.raises(RecipeError, match="other variants"):
        api.sweep(tiny_recipe, ["steps[0].quantize.calibration=minmax"], out=out, resume=True)


def test_failed_variant_is_a_failed_row(local_ray, tiny_recipe, tiny_model_dir, tmp_path):
    # a valid recipe whose weights file is missing fails when the variant runs; the other one still runs
    weights = tiny_model_dir / "tiny.safetensors"
    report = api.sweep(tiny_recipe, [f"model.weights={weights},{tmp_path / 'missing.safetensors'}"], out=tmp_path / "s")
    ok, bad = report.sweep["variants"]
    assert ok["status"] == "ok" and bad["status"] == "failed" and "missing.safetensors" in bad["error"]
    failed = [r for r in report.results if r.status == "failed"]
    assert [r.variant for r in failed] == [f"{bad['name']}/compressed"]
    assert {r.variant for r in report.results if r.status == "ok"} == {f"{ok['name']}/baseline", f"{ok['name']}/compressed"}
    assert any(g.name == "target_ok" and not g.passed for g in report.gates)
