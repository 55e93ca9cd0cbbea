"""openvino-cpu and openvino-cpu-bf16 end to end on the tiny model: IR files, explicit
precision read back from the compiled model, parity, latency, report rows."""

from __future__ import annotations

import pytest

from compressor.pipeline import run_recipe
from compressor.recipe import load_recipe
from compressor.targets.openvino_cpu import OpenVinoCpuTarget
from compressor.targets.spec import load_target
from tests.targets.targets_fixtures import write_recipe

pytestmark = pytest.mark.skipif(OpenVinoCpuTarget.unavailable_reason() is not None,
                                reason=str(OpenVinoCpuTarget.unavailable_reason()))


@pytest.mark.slow
def test_openvino_fp32_int8_bf16_end_to_end(tmp_path, tt_model_dir):
    recipe = write_recipe(tmp_path, tt_model_dir, ["openvino-cpu", "openvino-cpu-bf16"])
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=tmp_path / "run")
    rows = {(r.variant, r.target): r for r in report.results}
    assert set(rows) == {(v, t) for v in ("baseline", "compressed") for t in ("openvino-cpu", "openvino-cpu-bf16")}
    for (variant, target), r in rows.items():
        assert r.status == "ok", r.error
        assert r.artifact.endswith(".xml")
        xml = tmp_path / "run" / r.artifact
        assert xml.with_suffix(".bin").exists() and r.size_bytes > xml.stat().st_size
        assert r.parity.passed and r.latency_ms.p50 > 0 and r.accuracy.samples == 120
        assert r.device["performance_hint"] == "LATENCY" and r.device["threads"] == 2
    # the precision OpenVINO reports having used, not just the one asked for
    assert rows["baseline", "openvino-cpu"].device["inference_precision"] == "f32"
    assert rows["baseline", "openvino-cpu"].precision == "fp32"
    assert rows["baseline", "openvino-cpu"].parity.max_abs_diff < 1e-4
    assert rows["compressed", "openvino-cpu"].precision == "int8"
    bf16 = rows["baseline", "openvino-cpu-bf16"]
    assert bf16.precision == "bf16" and bf16.device["inference_precision"] in ("bf16", "f32")
    # no half-written IR left behind by the atomic writes
    assert not [p for p in (tmp_path / "run" / "artifacts").rglob(".*") if p.name.startswith(".")]


def test_openvino_rejects_unknown_precision_option():
    from compressor.errors import RecipeError

    spec = load_target("openvino-cpu").model_copy(update={"options": {"inference_precision": "int4"}})
    with pytest.raises(RecipeError, match=r"options.inference_precision: Input should be 'f32', 'bf16' or 'f16'"):
        OpenVinoCpuTarget(spec)


def test_openvino_load_refuses_an_artifact_from_another_target(tmp_path):
    from compressor.errors import TargetFailed
    from compressor.targets.base import Artifact

    target = OpenVinoCpuTarget(load_target("openvino-cpu"))
    with pytest.raises(TargetFailed, match=r"loads OpenVINO IR \(.xml\), not model.onnx"):
        target.load(Artifact(tmp_path / "model.onnx", "fp32"), threads=1)


def test_openvino_bound_call_runs_the_bound_inputs(tmp_path):
    """bind() times infer() on inputs set once: it must compute the same outputs as run()."""
    import numpy as np
    import torch

    from compressor.targets.base import ModelArtifact
    from compressor.targets.openvino_cpu import OpenVinoSession
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    model(torch.from_numpy(x))
    from compressor.export.onnx_export import export_onnx

    onnx_path = export_onnx(model, tmp_path / "m.onnx", [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}])
    target = make_target(load_target("openvino-cpu"))
    art = target.compile(ModelArtifact("m", "fp32", onnx_path, []), tmp_path, precision="fp32")
    session = target.load(art, threads=1)
    assert isinstance(session, OpenVinoSession)
    expected = session.run({"input": x})[0]
    call = session.bind({"input": x})
    call()
    got = session.request.get_output_tensor(0).data
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
