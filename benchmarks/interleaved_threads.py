"""Batch-1 ONNX Runtime latency of ONNX models against the first one, timed interleaved in one
process (the product's ``measure_interleaved``) at each thread count, repeated: on a shared VM the
2-thread ratio can swing while the 1-thread one holds, and this shows both side by side.

    python benchmarks/interleaved_threads.py fp32.onnx int8-a.onnx int8-b.onnx [--threads 1,2] [--repeats 3]

Sessions as the onnxruntime-cpu target makes them (inter-op 1, graph optimizations on,
WeightBiasQuantization off so a node left FP32 runs FP32, worker threads that do not spin). Prints one line per repeat and thread
count: each model's speedup over the first (its p50 / theirs) and the first's p50 in ms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import _common  # noqa: E402,F401 - puts the checkout on sys.path


def main() -> None:
    import onnxruntime as ort

    from compressor.bench.latency import measure_interleaved
    from compressor.utils.ort_sessions import KEEP_FLOAT_NODES, no_spinning

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="the reference first")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--spinning", action="store_true",
                    help="leave ORT's worker threads spinning between calls (ORT's default; compressor's are not)")
    args = ap.parse_args()
    names = [f"{i}:{p.parent.parent.name if p.parent.name == 'artifacts' else p.stem}" for i, p in enumerate(args.models)]
    for threads in (int(t) for t in args.threads.split(",")):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        if not args.spinning:
            no_spinning(so)
        calls = {}
        for name, path in zip(names, args.models):
            s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                     disabled_optimizers=list(KEEP_FLOAT_NODES))
            inp = s.get_inputs()[0]
            x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
            calls[name] = lambda s=s, n=inp.name, x=x: s.run(None, {n: x})
        for rep in range(args.repeats):
            t = measure_interleaved(calls, rounds=args.rounds, per_round=10, warmup=5)
            ref = t.stats[names[0]].p50
            ratios = "  ".join(f"{n} {ref / t.stats[n].p50:.2f}x" for n in names[1:])
            print(f"{'spinning' if args.spinning else 'not spinning'} threads {threads} repeat {rep + 1}: {ratios}  ({names[0]} p50 {ref:.2f} ms)", flush=True)


if __name__ == "__main__":
    main()
