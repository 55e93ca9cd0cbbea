"""executorch-xnnpack end to end on the tiny model: FP32 and PT2E INT8 .pte files,
run in executorch.runtime in the child process, parity, latency, report rows."""

from __future__ import annotations

import pytest
from tests.targets.targets_fixtures import write_recipe

from compressor.pipeline import run_recipe
from compressor.recipe import load_recipe
from compressor.targets.executorch_xnnpack import ExecuTorchXnnpackTarget

pytestmark = pytest.mark.skipif(ExecuTorchXnnpackTarget.unavailable_reason() is not None,
                                reason=str(ExecuTorchXnnpackTarget.unavailable_reason()))


@pytest.mark.slow
def test_executorch_fp32_and_int8_end_to_end(tmp_path, tt_model_dir):
    recipe = write_recipe(tmp_path, tt_model_dir, ["executorch-xnnpack"])
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=tmp_path / "run")
    rows = {r.variant: r for r in report.results}
    assert set(rows) == {"baseline", "compressed"}
    for variant, r in rows.items():
        assert r.status == "ok", r.error
        assert r.artifact.endswith(f"{variant}.pte") and r.latency_ms.p50 > 0 and r.accuracy.samples == 120
        assert r.parity.passed and r.device["delegate"] == "XNNPACK" and r.device["threads"] == 2
    assert rows["baseline"].precision == "fp32" and rows["baseline"].parity.max_abs_diff < 1e-4
    assert rows["compressed"].precision == "int8"
    # INT8 weights: the program shrinks
    assert rows["compressed"].size_bytes < 0.8 * rows["baseline"].size_bytes
    # the exported program benchmarks on its own too (`compressor bench model.pte`)
    from compressor.bench.standalone import bench_file
    from compressor.recipe.schema import BenchmarkSpec

    alone = bench_file(tmp_path / "run" / rows["compressed"].artifact, "executorch-xnnpack", data_source="digits",
                       samples=120, input_shape=[1, 1, 8, 8], precision="int8",
                       bench=BenchmarkSpec(warmup=1, iterations=5, min_duration_s=0.01))
    assert alone.results[0].status == "ok"
    assert alone.results[0].accuracy.value == pytest.approx(rows["compressed"].accuracy.value)


def test_executorch_refuses_onnx_only_models(tmp_path):
    from compressor.errors import TargetFailed
    from compressor.targets.base import ModelArtifact
    from compressor.targets.spec import load_target

    target = ExecuTorchXnnpackTarget(load_target("executorch-xnnpack"))
    with pytest.raises(TargetFailed, match="needs the torch model"):
        target.compile(ModelArtifact("baseline", "fp32", tmp_path / "m.onnx", []), tmp_path, precision="fp32")
