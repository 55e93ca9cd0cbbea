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


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [False, True])
def test_executorch_reports_the_per_channel_setting_it_used(tmp_path, tt_model_dir, per_channel):
    """options.per_channel reaches the PT2E quantizer (per-tensor weight Q/DQ when false) and
    the result reports what the export did, not the quantizer's default."""
    from compressor.data import load_split
    from compressor.models.loader import load_torch_model
    from compressor.recipe import load_recipe
    from compressor.targets.base import ModelArtifact
    from compressor.targets.executorch_xnnpack import quantize_pt2e
    from compressor.targets.spec import load_target

    recipe = load_recipe(write_recipe(tmp_path, tt_model_dir, ["executorch-xnnpack"]))
    model = load_torch_model(recipe.model).eval()
    data = load_split("digits", "train", 16)
    data.inputs["input"] = data.inputs["input"].reshape(-1, 1, 8, 8)
    spec = load_target("executorch-xnnpack")
    spec = spec.model_copy(update={"options": {**spec.options, "per_channel": per_channel,
                                               "calibration_samples": 8}})
    target = ExecuTorchXnnpackTarget(spec)
    art = target.compile(ModelArtifact("compressed", "int8", None, [], model, meta={"calibration": lambda: data}),
                         tmp_path, precision="int8")
    target.load(art, threads=1)
    d = target.describe()
    assert d["per_channel"] is per_channel and d["calibration_samples"] == 8

    import torch

    example = (torch.from_numpy(data.first(1)["input"]),)
    graph = quantize_pt2e(model, example, [example], per_channel=per_channel)
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert any("per_channel" in t for t in targets) is per_channel, targets
