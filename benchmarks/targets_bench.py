"""Targets side by side: ORT FP32/INT8, OpenVINO FP32(f32)/INT8, ExecuTorch FP32/INT8.

Models: examples/resnet18.py (random weights; latency only) and examples/mobilenet_v2.py
(real ImageNet weights; calibrated on real photo crops, top-1 agreement with the FP32
model on other crops). Batch 1, 2 threads, every variant in one process and one run;
latency is measured in interleaved rounds (each round times every variant, the product's
paired timing, compressor.bench.paired) and the p50 over all rounds is reported, so load
on the machine hits all alike.

    nice python benchmarks/targets_bench.py            # writes benchmarks/out/targets.json
    nice python benchmarks/targets_bench.py --quick    # fewer rounds/images (smoke run)

Results: benchmarks/results/targets.md (the committed copy) and docs/targets.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, THREADS, load_example  # noqa: E402 - puts the checkout on sys.path

VARIANTS = ["ort-fp32", "ort-int8", "openvino-fp32", "openvino-int8", "executorch-fp32", "executorch-int8"]


def build_sessions(name: str, model, calib: np.ndarray, out: Path) -> tuple[dict, dict]:
    """Compile every variant with the project's targets; returns sessions and artifact sizes."""
    from compressor.data.dataset import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
    from compressor.targets.base import Artifact, ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    calib_ds = Dataset({"input": calib}, None, "calibration")
    fp32 = export_onnx(model, out / f"{name}.fp32.onnx",
                       [{"name": "input", "shape": [2, *calib.shape[1:]], "dtype": "float32", "dynamic": {}}])
    ort_spec = load_target("onnxruntime-cpu")
    int8 = out / f"{name}.int8.onnx"
    quantize_onnx(fp32, int8, QuantizeConfig(**ort_spec.quantization), calib_ds)
    sessions, sizes = {}, {}
    ort = make_target(ort_spec)
    for prec, path in (("fp32", fp32), ("int8", int8)):
        art = Artifact(path, prec, [path, *path.parent.glob(path.name + ".data")])
        sessions[f"ort-{prec}"], sizes[f"ort-{prec}"] = ort.load(art, threads=THREADS), art.size_bytes
    ov = make_target(load_target("openvino-cpu"))
    for prec, path in (("fp32", fp32), ("int8", int8)):
        art = ov.compile(ModelArtifact(f"{name}-{prec}", prec, path, []), out, precision=prec)
        sessions[f"openvino-{prec}"], sizes[f"openvino-{prec}"] = ov.load(art, threads=THREADS), art.size_bytes
    et_spec = load_target("executorch-xnnpack")
    et = make_target(et_spec.model_copy(update={"options": {**et_spec.options, "calibration_samples": len(calib)}}))
    for prec in ("fp32", "int8"):
        t0 = time.perf_counter()
        art = et.compile(ModelArtifact(f"{name}-{prec}", prec, None, [], model, meta={"calibration": lambda: calib_ds}),
                         out, precision=prec)
        print(f"  executorch {prec}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
        sessions[f"executorch-{prec}"], sizes[f"executorch-{prec}"] = et.load(art, threads=THREADS), art.size_bytes
    return sessions, sizes


def time_rounds(sessions: dict, x: np.ndarray, rounds: int, iterations: int) -> dict[str, float]:
    """Each variant's p50 latency (ms) over ``rounds`` interleaved rounds of ``iterations`` calls
    (the product's paired timing, as `compressor bench --interleave`)."""
    from compressor.bench.paired import time_interleaved
    from compressor.data import Dataset

    timing = time_interleaved(sessions, Dataset({"input": x}), rounds=rounds, per_round=iterations)
    return {k: s.p50 for k, s in timing.stats.items()}


def agreement(sessions: dict, images: np.ndarray) -> dict[str, float]:
    """Top-1 agreement of each variant with ORT FP32 (= the FP32 model) on ``images``, batch 1."""
    tops = {k: np.array([int(np.argmax(s.run({"input": images[i:i + 1]})[0])) for i in range(len(images))])
            for k, s in sessions.items()}
    return {k: float(np.mean(v == tops["ort-fp32"])) for k, v in tops.items()}


def render_markdown(results: dict, meta: dict) -> str:
    """The results table (copied to benchmarks/results/targets.md)."""
    lines = [f"Batch 1, {meta['threads']} threads, p50 over {meta['rounds']} interleaved rounds "
             f"({meta['iterations_per_round']} runs of each variant per round); load average at the end: "
             f"{' '.join(meta['loadavg_at_end'])}.", ""]
    for name, res in results.items():
        agree = res.get("top1_agreement_vs_fp32")
        lines += [f"### {name}", "", "| variant | p50 ms | speedup vs ORT FP32 | size MB |"
                  + (f" top-1 agreement vs FP32 ({res['eval_images']} crops) |" if agree else ""),
                  "|---|---|---|---|" + ("---|" if agree else "")]
        for k in VARIANTS:
            row = (f"| {k} | {res['p50_ms'][k]:.2f} | {res['speedup_vs_ort_fp32'][k]:.2f}x | "
                   f"{res['size_bytes'][k] / 1e6:.1f} |")
            lines.append(row + (f" {agree[k]:.1%} |" if agree else ""))
        lines += ["", f"ExecuTorch INT8 vs FP32: {res['executorch_int8_vs_fp32']:.2f}x; "
                  f"OpenVINO FP32 ran at {res['openvino_fp32_precision']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    rounds, iters, n_calib, n_eval = (2, 10, 16, 16) if args.quick else (5, 20, 64, 100)
    args.out.mkdir(parents=True, exist_ok=True)
    mnv2 = load_example("mobilenet_v2")
    calib, evals = mnv2.sample_images(n_calib, seed=0), mnv2.sample_images(n_eval, seed=1)
    results = {}
    t_start = time.perf_counter()
    for name, build in (("resnet18", lambda: load_example("resnet18").build()),
                        ("mobilenet_v2", lambda: mnv2.build(pretrained=True))):
        print(f"{name}: compiling", flush=True)
        torch.manual_seed(0)
        model = build().eval()
        sessions, sizes = build_sessions(name, model, calib, args.out)
        print(f"{name}: timing {rounds} rounds", flush=True)
        p50 = time_rounds(sessions, evals[:1], rounds, iters)
        res = {"p50_ms": p50, "size_bytes": sizes,
               "speedup_vs_ort_fp32": {k: p50["ort-fp32"] / v for k, v in p50.items()},
               "executorch_int8_vs_fp32": p50["executorch-fp32"] / p50["executorch-int8"],
               "openvino_fp32_precision": sessions["openvino-fp32"].inference_precision}
        if name == "mobilenet_v2":
            res["top1_agreement_vs_fp32"] = agreement(sessions, evals)
            res["eval_images"] = len(evals)
        results[name] = res
        print(json.dumps(res, indent=1), flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    meta = {"threads": THREADS, "batch": 1, "rounds": rounds, "iterations_per_round": iters,
            "calibration_images": n_calib, "loadavg_at_end": load, "seconds": round(time.perf_counter() - t_start)}
    from compressor.bench.environment import describe_environment

    (args.out / "targets.json").write_text(json.dumps({"meta": meta, "env": describe_environment(THREADS),
                                                       "results": results}, indent=1))
    (args.out / "targets.md").write_text(render_markdown(results, meta))
    print(f"wrote {args.out / 'targets.json'} and targets.md in {meta['seconds']} s "
          f"(load average {' '.join(load)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
