"""MobileNetV2 (real ImageNet weights) INT8 fidelity: which quantizer settings keep the FP32
answers, how stable the FP32 answers themselves are, what each costs in latency, and
the accuracy drop on a labelled set after a short Fashion-MNIST fine-tune.

    nice python benchmarks/mobilenet_int8.py                 # agreement + latency + fashion
    nice python benchmarks/mobilenet_int8.py --skip-fashion  # photos only (about 5 minutes)
    nice python benchmarks/mobilenet_int8.py --skip-photos --skip-fashion --executorch   # ExecuTorch part

Data: calibration = 64 crops of scikit-learn's two sample photos (seed 1, the recipe's
"train" split), evaluation = 200 other crops (seed 2, the recipe's "test" split); see
examples/photos.py. Writes benchmarks/out/mobilenet_int8.json; the committed summary is
benchmarks/results/mobilenet_int8.md.

Metrics on the evaluation crops (each INT8 model against the FP32 model on ONNX Runtime):
- top-1 agreement (the primary number, all crops);
- FP32 top-1 within the INT8 top-5; mean logit cosine;
- top-1 agreement on "stable" crops only (secondary, labelled as such): crops whose FP32
  top-1 does not change when one grey level of Gaussian noise is added to the input
  (3 draws). Defined by the FP32 model alone, before any INT8 model is seen.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT, THREADS, interleaved_p50, ort_session, run_all, stable_crops  # puts the checkout on sys.path

NEW = "ort moving-avg minmax (batch 1), classifier fp32 (new recipe)"
NNCF = "nncf mixed preset, full bias corr. (OpenVINO option)"


def fidelity(out: np.ndarray, ref: np.ndarray, stable: np.ndarray) -> dict[str, float]:
    agree = out.argmax(1) == ref.argmax(1)
    top5 = np.argsort(out, 1)[:, -5:]
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    return {"top1_agreement": float(agree.mean()),
            "fp32_top1_in_int8_top5": float(np.mean([r in t for r, t in zip(ref.argmax(1), top5)])),
            "cosine": float(cos.mean()),
            "top1_agreement_stable_crops": float(agree[stable].mean())}


def quantizers(fp32: Path, calib: np.ndarray, out: Path) -> dict[str, tuple[Path, float]]:
    """Each candidate INT8 model: name -> (path, seconds to quantize)."""
    import nncf
    import onnx

    from compressor.data.dataset import Dataset
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx

    ds = Dataset({"input": calib})
    models: dict[str, tuple[Path, float]] = {}
    for name, cfg in [("ort minmax (previous recipe)", {}),
                      ("ort percentile 99.99", {"calibration": "percentile", "percentile": 99.99}),
                      ("ort minmax, first conv + classifier fp32", {"nodes_to_exclude": ["node_Conv_810", "node_linear"]}),
                      ("ort moving-avg minmax (batch 1)", {"moving_average": True, "calibration_batch_size": 1}),
                      (NEW, {"moving_average": True, "calibration_batch_size": 1, "nodes_to_exclude": ["node_linear"]})]:
        t0 = time.perf_counter()
        dst = out / f"mnv2.{len(models)}.onnx"
        quantize_onnx(fp32, dst, QuantizeConfig(**cfg), ds)
        models[name] = (dst, time.perf_counter() - t0)
    proto = onnx.load(str(fp32))
    items = nncf.Dataset([{"input": calib[i:i + 1]} for i in range(len(calib))])
    for name, kw in [("nncf default (performance, fast bias corr.)", {}),
                     ("nncf mixed preset, fast bias corr.", {"preset": nncf.QuantizationPreset.MIXED}),
                     (NNCF,
                      {"preset": nncf.QuantizationPreset.MIXED, "fast_bias_correction": False})]:
        t0 = time.perf_counter()
        q = nncf.quantize(proto, items, subset_size=len(calib), **kw)
        dst = out / f"mnv2.{len(models)}.onnx"
        onnx.save(q, str(dst))
        models[name] = (dst, time.perf_counter() - t0)
    return models


def photos_part(out: Path, quick: bool) -> dict:
    import mobilenet_v2 as mn

    from compressor.export.onnx_export import export_onnx
    from compressor.targets.base import ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    n_eval = 60 if quick else 200
    calib, evals = mn.sample_images(64, seed=1), mn.sample_images(n_eval, seed=2)
    fp32 = export_onnx(mn.build(pretrained=True).eval(), out / "mnv2.fp32.onnx",
                       [{"name": "input", "shape": [2, 3, 224, 224], "dtype": "float32", "dynamic": {}}])
    s32 = ort_session(fp32)
    ref = run_all(s32, evals)
    prob = np.exp(ref - ref.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    stable, floor = stable_crops(s32, evals, ref)
    res: dict = {"eval_crops": n_eval, "calibration_crops": len(calib), "stable_crops": int(stable.sum()),
                 "fp32_noise_floor_agreement": floor, "fp32_median_top1_prob": float(np.median(prob.max(1))),
                 "variants": {}}
    print(f"FP32: median top-1 prob {res['fp32_median_top1_prob']:.2f}; agreement with itself under one grey "
          f"level of noise {floor:.1%}; stable crops {stable.sum()}/{n_eval}", flush=True)
    models = quantizers(fp32, calib, out)
    for name, (path, secs) in models.items():
        row = fidelity(run_all(ort_session(path), evals), ref, stable)
        res["variants"][name] = {**row, "quantize_s": round(secs, 1), "size_mb": round(path.stat().st_size / 1e6, 2)}
        print(f"  {name:50s} {json.dumps({k: round(v, 3) for k, v in row.items()})} {secs:.0f}s", flush=True)
    # latency: ORT FP32 vs the old and the new INT8, plus OpenVINO running both INT8 models
    old, new, nn = (models[k][0] for k in ("ort minmax (previous recipe)", NEW, NNCF))
    ov = make_target(load_target("openvino-cpu"))
    feeds = {"input": evals[:1]}
    runs = {}
    for label, path in (("ort fp32", fp32), ("ort int8 old", old), ("ort int8 new", new), ("ort int8 nncf", nn)):
        s = ort_session(path)
        runs[label] = lambda s=s: s.run(None, feeds)
    for label, path, prec in (("openvino fp32", fp32, "fp32"), ("openvino int8 old", old, "int8"),
                              ("openvino int8 new", new, "int8"), ("openvino int8 nncf", nn, "int8")):
        art = ov.compile(ModelArtifact(label.replace(" ", "-"), prec, path, []), out, precision=prec)
        s = ov.load(art, threads=THREADS)
        runs[label] = lambda s=s: s.run(feeds)
        if prec == "int8":
            res["variants"][f"{label} (OpenVINO running it)"] = fidelity(run_all(s, evals), ref, stable)
    p50 = interleaved_p50(runs, rounds=2 if quick else 5)
    res["latency_p50_ms"] = p50
    res["speedup_vs_ort_fp32"] = {k: p50["ort fp32"] / v for k, v in p50.items()}
    print("latency", json.dumps({k: round(v, 2) for k, v in p50.items()}), flush=True)
    return res


def executorch_part(out: Path, quick: bool) -> dict:
    """ExecuTorch FP32 vs INT8 (the target's own PT2E + XNNPACK lowering): what is delegated,
    whether every conv (depthwise included) is quantized, and the latency ratio side by side."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    import mobilenet_v2 as mn
    from compressor.targets.executorch_xnnpack import ExecuTorchSession, quantize_pt2e

    model = mn.build(pretrained=True).eval()
    calib = mn.sample_images(16 if quick else 64, seed=1)
    example = (torch.from_numpy(calib[:1]),)
    res: dict = {}
    paths = {}
    for prec in ("fp32", "int8"):
        net = model
        if prec == "int8":
            net = quantize_pt2e(model, example, [(torch.from_numpy(calib[i:i + 1]),) for i in range(len(calib))])
            convs = [n for n in net.graph.nodes if n.op == "call_function" and "conv2d" in str(n.target)]
            res["int8_convs"] = len(convs)
            res["int8_depthwise_convs"] = sum(1 for n in convs if len(n.args) > 6 and n.args[6] > 1)
            res["int8_convs_with_quantized_input"] = sum(1 for n in convs if "dequantize" in str(n.args[0].target))
        prog = to_edge_transform_and_lower(torch.export.export(net, example), partitioner=[XnnpackPartitioner()])
        ops = collections.Counter(str(n.target) for n in prog.exported_program().graph.nodes if n.op == "call_function")
        res[f"{prec}_top_level_ops"] = dict(ops)  # all delegated: one executorch_call_delegate (+ getitem)
        paths[prec] = out / f"mnv2.{prec}.pte"
        paths[prec].write_bytes(prog.to_executorch().buffer)
    sessions = {k: ExecuTorchSession(p, threads=THREADS, input_names=["input"]) for k, p in paths.items()}
    feeds = {"input": calib[:1]}
    p50 = interleaved_p50({k: (lambda s=s: s.run(feeds)) for k, s in sessions.items()}, rounds=2 if quick else 7)
    res["latency_p50_ms"] = p50
    res["int8_vs_fp32"] = p50["fp32"] / p50["int8"]
    print("executorch", json.dumps(res), flush=True)
    return res


def fashion_part(out: Path, quick: bool) -> dict:
    from _fashion_finetune import finetune_and_quantize

    return finetune_and_quantize(out, train_samples=1000 if quick else 4000, test_samples=500 if quick else 2000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-fashion", action="store_true")
    ap.add_argument("--skip-photos", action="store_true")
    ap.add_argument("--executorch", action="store_true", help="also the ExecuTorch FP32/INT8 part (slow export)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "mobilenet_int8")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result: dict = {}
    if not args.skip_photos:
        result["photos"] = photos_part(args.out, args.quick)
    if args.executorch:
        result["executorch"] = executorch_part(args.out, args.quick)
    if not args.skip_fashion:
        result["fashion"] = fashion_part(args.out, args.quick)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    result["meta"] = {"threads": THREADS, "loadavg_at_end": load, "seconds": round(time.perf_counter() - t0)}
    dst = args.out.parent / ("mobilenet_int8.json" if not args.skip_photos else "mobilenet_int8.extra.json")
    dst.write_text(json.dumps(result, indent=1))
    print(f"wrote {dst} in {result['meta']['seconds']} s (load average {' '.join(load)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
