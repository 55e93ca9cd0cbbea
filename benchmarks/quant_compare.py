"""Side-by-side INT8 quantizers on one model in one run: ORT quantize_static defaults,
NNCF default PTQ, INC default PTQ, and compressor's accuracy-aware mode.

Each method is a compressor recipe run (same data, same ORT latency harness), so the
numbers are comparable. Results: benchmarks/out/quant_compare/ and
benchmarks/results/quant_compare.md.

    nice python benchmarks/quant_compare.py [--eval 2000] [--max-drop 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out" / "quant_compare"

METHODS = {
    # ORT's own defaults: QDQ, S8 activations and weights, per-tensor, MinMax
    "ORT quantize_static defaults": "{per_channel: false, activation_type: int8}",
    "NNCF default PTQ": "{engine: nncf}",
    "INC default PTQ (PT2E)": "{engine: inc}",
    "compressor accuracy-aware (ORT)": "{accuracy_criterion: {max_drop: MAXDROP, tuning_samples: 1000}}",
}


def recipe(name: str, quantize: str, evaluation: int) -> str:
    return f"""\
name: {name}
model:
  factory: {ROOT}/examples/fashion_cnn.py:build
  weights: {ROOT}/examples/weights/fashion_cnn.safetensors
  input_shape: [1, 1, 28, 28]
data:
  source: fashion-mnist
  calibration: {{split: train, samples: 256}}
  evaluation: {{split: test, samples: {evaluation}}}
steps:
  - quantize: {quantize}
targets: [onnxruntime-cpu]
benchmark: {{warmup: 20, iterations: 200, min_duration_s: 1.0, threads: 2}}
"""


def main() -> None:
    from compressor.errors import CompressorError
    from compressor.pipeline import run_recipe
    from compressor.recipe.loader import parse_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--max-drop", type=float, default=0.5)
    args = ap.parse_args()
    rows = []
    for i, (method, q) in enumerate(METHODS.items()):
        q = q.replace("MAXDROP", str(args.max_drop))
        r = parse_recipe(recipe(f"qc{i}", q, args.eval))
        t0 = time.perf_counter()
        try:
            rep = run_recipe(r, run_dir=OUT / f"m{i}")
        except CompressorError as e:
            rows.append({"method": method, "error": str(e)})
            continue
        wall = time.perf_counter() - t0
        base = next(x for x in rep.results if x.variant == "baseline")
        comp = next(x for x in rep.results if x.variant == "compressed")
        step = next(s for s in rep.steps if s["kind"] == "quantize")
        rows.append({"method": method, "fp32": base.accuracy.value, "int8": comp.accuracy.value,
                     "drop_pp": (base.accuracy.value - comp.accuracy.value) * 100,
                     "fp32_ms": base.latency_ms.p50, "int8_ms": comp.latency_ms.p50,
                     "speedup": base.latency_ms.p50 / comp.latency_ms.p50, "quantize_s": step["seconds"],
                     "trials": len(step.get("details", {}).get("tuning", {}).get("trials", [])),
                     "fallback": step.get("details", {}).get("tuning", {}).get("fallback_nodes", []), "wall_s": wall})
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(rows, indent=2))
    lines = ["# INT8 quantizers side by side: Fashion-MNIST ResNet-style CNN", "",
             f"`nice python benchmarks/quant_compare.py --eval {args.eval} --max-drop {args.max_drop}` "
             "(2 shared CPU cores; latency = ORT CPU batch 1, p50, 2 threads; FP32 measured in the same run as each row).", "",
             "| method | FP32 top1 | INT8 top1 | drop (pp) | FP32 ms | INT8 ms | speedup | quantize+tune s | trials | fell back |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error'][:150]} |||||||||")
            continue
        lines.append(f"| {r['method']} | {r['fp32']:.4f} | {r['int8']:.4f} | {r['drop_pp']:.2f} | {r['fp32_ms']:.3f} | "
                     f"{r['int8_ms']:.3f} | {r['speedup']:.2f}x | {r['quantize_s']:.1f} | {r['trials'] or '-'} | "
                     f"{len(r['fallback'])} |")
    (ROOT / "benchmarks" / "results" / "quant_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
