"""Interleaved FP32-vs-INT8 latency of a finished run's models on onnxruntime-cpu.

Sequential timing of the baseline and then the compressed model drifts on this shared
machine (MiniLM's INT8/FP32 ratio read 2.26x and 1.43x in two runs an hour apart). Both
sessions are loaded in one process (with the target's options) and timed in alternating
blocks with the product's paired timing (compressor.bench.paired, which `compressor run`'s
min_speedup gate and `compressor bench A B --interleave` use); the per-round ratios show
how much the ratio itself moves with the load.

    nice python benchmarks/paired_speedup.py benchmarks/out/families/minilm-dynamic [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path


def main() -> None:
    from compressor.bench.paired import time_interleaved
    from compressor.recipe.loader import load_recipe
    from compressor.targets.onnxruntime_cpu import OrtSession
    from compressor.targets.spec import load_target
    from compressor.context import RunContext

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=10, help="timed calls per model per round")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    art = args.run_dir / "artifacts" / "onnxruntime-cpu"
    models = {"fp32": art / "baseline.onnx", "int8": art / "compressed.onnx"}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"not a finished run with an onnxruntime-cpu result: {missing[0]} is missing")
    recipe = load_recipe(args.run_dir / "recipe.resolved.yaml")
    ctx = RunContext(recipe, args.run_dir, ROOT / "recipes")
    data = ctx.evaluation_data().subset(1)
    options = load_target("onnxruntime-cpu", None).options
    sessions = {k: OrtSession(p, args.threads, options) for k, p in models.items()}
    # the product's paired timing (what `compressor bench A B --interleave` and the min_speedup gate use)
    timing = time_interleaved(sessions, data, rounds=args.rounds, per_round=args.per_round)
    p50 = {k: s.p50 for k, s in timing.stats.items()}
    print(f"run: {args.run_dir}  ({args.rounds} rounds x {args.per_round} calls each, threads {args.threads}, "
          f"options {options}, load {os.getloadavg()[0]:.1f})")
    print(f"p50 FP32 {p50['fp32']:.3f} ms, INT8 {p50['int8']:.3f} ms -> speedup {p50['fp32'] / p50['int8']:.2f}x")
    q = np.percentile(timing.speedups["int8"], [0, 10, 50, 90, 100])
    print("per-round speedup: min {:.2f}x, p10 {:.2f}x, median {:.2f}x, p90 {:.2f}x, max {:.2f}x".format(*q))


if __name__ == "__main__":
    main()
