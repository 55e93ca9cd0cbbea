"""Issue #2 numbers, measured side by side in one run.

1. The quickstart CNN on the full Fashion-MNIST test set: FP32 vs static INT8 on
   onnxruntime-cpu (accuracy drop, latency ratio) -- through `compressor run`.
2. A ResNet-18-shaped model at 1x3x224x224 (random weights: latency only): FP32 vs
   INT8 U8/S8 per-channel QDQ (what the onnxruntime-cpu target uses) vs ORT's
   default S8/S8, batch 1, 2 threads, interleaved rounds so machine noise hits all
   variants alike.

    python benchmarks/quickstart.py            # writes benchmarks/out/quickstart.json
"""

from __future__ import annotations

import json
import time

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path
OUT = ROOT / "benchmarks" / "out"


def quickstart() -> dict:
    import compressor
    from compressor.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    recipe.benchmark.paired = True  # the speedup from the run's paired (interleaved) timing
    t0 = time.perf_counter()
    report = compressor.run(recipe, out=OUT / "quickstart-run", base_dir=ROOT / "recipes")
    seconds = time.perf_counter() - t0
    base, int8 = report.result("baseline", "onnxruntime-cpu"), report.result("compressed", "onnxruntime-cpu")
    return {
        "fp32_top1": base.accuracy.value, "int8_top1": int8.accuracy.value, "samples": base.accuracy.samples,
        "drop_pp": (base.accuracy.value - int8.accuracy.value) * 100,
        "fp32_p50_ms": base.latency_ms.p50, "int8_p50_ms": int8.latency_ms.p50,
        "speedup": int8.paired.speedup if int8.paired else base.latency_ms.p50 / int8.latency_ms.p50,
        "speedup_p10_p90": [int8.paired.p10, int8.paired.p90] if int8.paired else None, "run_seconds": seconds,
    }


def resnet18(rounds: int = 5, iters: int = 40) -> dict:
    import torch

    from compressor.bench.paired import paired_record, time_interleaved
    from compressor.data import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
    from compressor.targets.onnxruntime_cpu import OrtSession

    import resnet18 as r18

    torch.manual_seed(0)
    model = r18.build().eval()
    work = OUT / "resnet18"
    work.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(model, work / "fp32.onnx", [{"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32"}])
    calib = Dataset({"input": np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)})
    u8s8 = work / "int8_u8s8.onnx"
    s8s8 = work / "int8_s8s8.onnx"
    quantize_onnx(fp32, u8s8, QuantizeConfig(), calib)
    quantize_onnx(fp32, s8s8, QuantizeConfig(activation_type="int8", symmetric_activations=True), calib)
    sessions = {name: OrtSession(p, 2, {}) for name, p in [("fp32", fp32), ("int8_u8s8", u8s8), ("int8_s8s8", s8s8)]}
    # interleaved: each round times every variant (compressor.bench.paired, as `compressor bench --interleave`)
    timing = time_interleaved(sessions, calib.subset(1), rounds=rounds, per_round=iters, warmup=10)
    p50 = {k: s.p50 for k, s in timing.stats.items()}
    paired = {k: paired_record(timing, k, rounds=rounds, per_round=iters) for k in ("int8_u8s8", "int8_s8s8")}
    return {"p50_ms": p50, "speedup_u8s8": paired["int8_u8s8"]["speedup"],
            "speedup_s8s8": paired["int8_s8s8"]["speedup"], "paired": paired, "samples_per_variant": rounds * iters}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"quickstart": quickstart(), "resnet18_224": resnet18()}
    (OUT / "quickstart.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
