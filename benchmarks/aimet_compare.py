"""AIMET (aimet-onnx) beside compressor on the two depthwise ImageNet nets: AIMET's own PTQ and
AdaRound, exported as QDQ ONNX and run by ONNX Runtime and OpenVINO like compressor's models.

aimet-onnx is not one of compressor's dependencies (it pins nothing compatible with the lock,
and pulls bokeh/panel/pandas); this script expects it in a separate folder on PYTHONPATH:

    pip download --no-deps aimet-onnx==2.42.0 -d /tmp/aimet-wheel
    pip install --target /tmp/aimet --no-deps /tmp/aimet-wheel/aimet_onnx-*.whl onnx2torch onnx_ir onnxscript osqp
    pip install --target /tmp/aimet bokeh hvplot && rm -rf /tmp/aimet/numpy* /tmp/aimet/PIL /tmp/aimet/pillow*
    PYTHONPATH=/tmp/aimet nice python benchmarks/aimet_compare.py --model mobilenet_v2 --eval-crops 1000

Same data as benchmarks/mobilenet_techniques.py: 64 calibration crops (seed 1), evaluation
crops (seed 2); AIMET's per-channel default configuration (8-bit weights per channel, 8-bit
activations), its AdaRound at ``--iterations`` steps per layer. Writes
benchmarks/out/aimet_compare-<model>.json; the committed summary is in
benchmarks/results/mobilenet_techniques.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from pathlib import Path

import numpy as np

from _common import ROOT, THREADS, int8_on_both, interleaved_p50, kl, lscpu_summary, ort_session, run_all  # noqa: E402


def aimet_models(fp32: Path, calib: np.ndarray, out: Path, iterations: int) -> dict[str, tuple[Path, float]]:
    """AIMET PTQ and AdaRound QDQ models of ``fp32`` (path, seconds each)."""
    import onnx
    from aimet_onnx import apply_adaround
    from aimet_onnx.quantsim import QuantizationSimModel

    config = Path(importlib.import_module("aimet_onnx").__file__).parent / "common" / "quantsim_config" / \
        "default_config_per_channel.json"
    feeds = [{"input": calib[i:i + 1]} for i in range(len(calib))]
    made = {}
    for name, adaround in (("AIMET PTQ (per-channel min-max)", False), ("AIMET AdaRound", True)):
        t0 = time.perf_counter()
        sim = QuantizationSimModel(onnx.load(str(fp32)), param_type="int8", activation_type="int8",
                                   config_file=str(config), providers=["CPUExecutionProvider"])
        if adaround:
            apply_adaround(sim, feeds, num_iterations=iterations)
        sim.compute_encodings(feeds)
        dst = out / f"aimet-{'adaround' if adaround else 'ptq'}.onnx"
        onnx.save(sim.to_onnx_qdq(), str(dst))
        made[name] = (dst, time.perf_counter() - t0)
        print(f"{name}: {made[name][1]:.0f} s", flush=True)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mobilenet_v2", "efficientnet_lite0"], default="mobilenet_v2")
    ap.add_argument("--eval-crops", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=1000, help="AIMET AdaRound steps per layer")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    from compressor.data.dataset import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
    from compressor.targets.registry import make_target
    from compressor.targets.spec import load_target

    mn = importlib.import_module(args.model)
    out = ROOT / "benchmarks" / "out" / f"aimet_compare-{args.model}"
    out.mkdir(parents=True, exist_ok=True)
    calib, evals = mn.sample_images(64, seed=1), mn.sample_images(args.eval_crops, seed=2)
    fp32 = export_onnx(mn.build(pretrained=True).eval(), out / "fp32.onnx",
                       [{"name": "input", "shape": [2, 3, 224, 224], "dtype": "float32", "dynamic": {}}])
    ref = run_all(ort_session(fp32), evals)
    load0 = os.getloadavg()
    models = aimet_models(fp32, calib, out, args.iterations)
    for name, rounding in (("compressor plain + GPTQ rounding", "gptq"), ("compressor plain + AdaRound", "adaround")):
        t0 = time.perf_counter()
        dst = out / f"compressor-{rounding}.onnx"
        quantize_onnx(fp32, dst, QuantizeConfig(per_channel=True, weight_rounding=rounding), Dataset({"input": calib}))
        models[name] = (dst, time.perf_counter() - t0)
    ov = make_target(load_target("openvino-cpu"))
    feeds = {"input": evals[:1]}
    runs = {"ort fp32": (lambda s=ort_session(fp32): s.run(None, feeds))}
    res: dict = {"model": args.model, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": lscpu_summary(),
                 "threads": THREADS, "eval_crops": args.eval_crops, "aimet_adaround_iterations": args.iterations,
                 "load_start": load0, "variants": {}}
    for i, (name, (path, secs)) in enumerate(models.items()):
        s, o, _, o_ov = int8_on_both(path, evals, ov, out, f"aimet-ov-{i}")
        res["variants"][name] = {"top1_agreement_ort": float(np.mean(o.argmax(1) == ref.argmax(1))),
                                 "top1_agreement_openvino": float(np.mean(o_ov.argmax(1) == ref.argmax(1))),
                                 "kl_ort": kl(ref, o), "quantize_s": round(secs, 1)}
        runs[f"ort {name}"] = lambda s=s: s.run(None, feeds)
        print(name, json.dumps(res["variants"][name]), flush=True)
    p50 = interleaved_p50(runs, rounds=args.rounds)
    res["speedup_vs_ort_fp32"] = {k: p50["ort fp32"] / v for k, v in p50.items()}
    res["load_end"] = os.getloadavg()
    print(json.dumps(res["speedup_vs_ort_fp32"]), flush=True)
    (ROOT / "benchmarks" / "out" / f"aimet_compare-{args.model}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
