"""Benchmark fidelity: is `compressor bench`'s p50 stable, and does it agree with the runtimes' own tools?

1. Stability: the coefficient of variation of the p50 over R repeated `compressor bench`
   runs of one model (each a fresh process). Goal <= 3 %.
2. Agreement, measured in the same rounds (interleaved, so load changes hit all alike):
   - ONNX Runtime: its C++ `onnxruntime_perf_test` is not in the pip wheel, so the
     reference is a minimal direct `InferenceSession.run` timing loop with the same
     session options (2 intra-op threads, sequential). Goal: within 5 %.
   - OpenVINO: its `benchmark_app` (shipped in the pip wheel) against our timing loop
     (compressor.bench.latency.measure_latency) over the same OpenVINO compiled model,
     FP32 (INFERENCE_PRECISION_HINT f32), 2 threads, 1 stream, synchronous. Goal: within 5 %.

    nice python benchmarks/bench_fidelity.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from _models import small_cnn  # noqa: E402

from compressor.bench.latency import measure_latency  # noqa: E402

SHAPE = (1, 3, 128, 128)


def compressor_bench(model: Path, out: Path, target: str = "onnxruntime-cpu") -> float:
    cmd = [sys.executable, "-m", "compressor", "bench", str(model), "--target", target,
           "--input-shape", ",".join(map(str, SHAPE)),
           "--warmup", "50", "--iterations", "200", "--min-duration", "1.0", "--threads", "2", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return json.loads(out.read_text())["results"][0]["latency_ms"]["p50"]


def ort_direct(model: Path, x: np.ndarray) -> float:
    """The simplest possible timing loop: perf_counter around session.run, 1 s at least."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    for _ in range(50):
        sess.run(None, {"input": x})
    times, start = [], time.perf_counter()
    while len(times) < 200 or time.perf_counter() - start < 1.0:
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def openvino_ours(model: Path, x: np.ndarray) -> float:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2,
                                                      "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    stats, _ = measure_latency(lambda: req.infer({0: x}), warmup=50, iterations=200, min_duration_s=1.0)
    return stats.p50


def benchmark_app(model: Path, app: str) -> float:
    cmd = [app, "-m", str(model), "-d", "CPU", "-api", "sync", "-hint", "none", "-nstreams", "1", "-nthreads", "2",
           "-infer_precision", "f32", "-shape", f"input[{','.join(map(str, SHAPE))}]", "-t", "2"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"Median:\s+([\d.]+)\s*(ms|us)", out)  # it switches to us for fast models
    if not m:
        raise RuntimeError(f"benchmark_app printed no median:\n{out[-2000:]}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_fidelity")
    args = ap.parse_args()
    model = small_cnn(args.out / "small_cnn.onnx")
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    app = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    has_app = Path(app).exists()
    rows = []
    for i in range(args.rounds):
        row = {"round": i, "compressor_bench": compressor_bench(model, args.out / f"bench{i:02d}.json"),
               "ort_direct": ort_direct(model, x)}
        if has_app:
            row["openvino_ours"] = openvino_ours(model, x)
            row["compressor_bench_openvino"] = compressor_bench(model, args.out / f"bench_ov{i:02d}.json", "openvino-cpu")
            row["benchmark_app"] = benchmark_app(model, app)
        rows.append(row)
        print(json.dumps(row))
    p50s = [r["compressor_bench"] for r in rows]
    summary = {
        "rounds": args.rounds, "model": "small_cnn 1x3x128x128 (3 conv, ONNX)",
        "compressor_bench_p50_median_ms": statistics.median(p50s),
        "compressor_bench_p50_cv_pct": 100 * statistics.stdev(p50s) / statistics.mean(p50s),
        "ort_direct_p50_median_ms": statistics.median(r["ort_direct"] for r in rows),
        "ours_vs_ort_direct_pct": 100 * (statistics.median(p50s) / statistics.median(r["ort_direct"] for r in rows) - 1),
        "onnxruntime_perf_test": shutil.which("onnxruntime_perf_test") or "not installed (not in the pip wheel)",
        "benchmark_app": app if has_app else "not installed",
    }
    if has_app:
        ours = statistics.median(r["openvino_ours"] for r in rows)
        theirs = statistics.median(r["benchmark_app"] for r in rows)
        cli_ov = statistics.median(r["compressor_bench_openvino"] for r in rows)
        summary.update(openvino_ours_p50_median_ms=ours, benchmark_app_median_ms=theirs,
                       ours_vs_benchmark_app_pct=100 * (ours / theirs - 1),
                       compressor_bench_openvino_p50_median_ms=cli_ov,
                       compressor_bench_openvino_vs_benchmark_app_pct=100 * (cli_ov / theirs - 1))
    (args.out / "bench_fidelity.json").write_text(json.dumps({**summary, "rows": rows}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
