"""Which INT8 format for which CPU: the measurements behind compressor/targets/quant_defaults.py.

The quickstart CNN is quantized in four QDQ formats (all per channel): U8 activations x
S8 weights, U8 x U8, U8 x S8 with 7-bit weights (reduce_range) and S8 x S8 (ORT's
default). Each is scored on N Fashion-MNIST test images on two kernel paths: this host's
own, and AVX2's under qemu's Haswell model (`compressor bench --emulate-cpu x86-64-avx2`;
on a host without VNNI both are the AVX2 path). Latency is this host's only (emulated
time means nothing), every format and FP32 timed in interleaved rounds in one process.

    nice python benchmarks/device_formats.py [--samples 1000] [--openvino]

Writes benchmarks/results/device_formats.md (and .json) naming the host's instruction set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path
OUT = ROOT / "benchmarks" / "out" / "device_formats"
RESULTS = ROOT / "benchmarks" / "results"

FORMATS = {
    "U8S8": {"activation_type": "uint8", "weight_type": "int8"},
    "U8U8": {"activation_type": "uint8", "weight_type": "uint8"},
    "U8S8 reduce_range": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": True},
    "S8S8 (ORT default)": {"activation_type": "int8", "weight_type": "int8"},
}


def quantize_all(samples: int) -> dict[str, Path]:
    """One `compressor run` per format (the quickstart recipe with the format set explicitly)."""
    import yaml

    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe

    base = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    models = {}
    for name, fmt in FORMATS.items():
        recipe = {**base, "name": "fmt-" + name.split()[0].lower() + ("-rr" if "reduce" in name else "")}
        recipe["steps"] = [{"quantize": {"mode": "static", "calibration": "minmax", "per_channel": True, **fmt}}]
        recipe["data"] = {**base["data"], "evaluation": {"split": "test", "samples": samples}}
        recipe["benchmark"] = {**base["benchmark"], "warmup": 2, "iterations": 5, "min_duration_s": 0.0}
        recipe.pop("gates", None)
        path = OUT / f"{recipe['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        run_dir = OUT / recipe["name"]
        run_recipe(load_recipe(path), recipe_path=ROOT / "recipes" / "quickstart.yaml", run_dir=run_dir)
        models[name] = run_dir / "artifacts" / "00-quantize.onnx"
        models.setdefault("FP32", run_dir / "artifacts" / "baseline.onnx")
    return models


def accuracy(model: Path, samples: int, target: str, emulate: str | None) -> float:
    out = OUT / f"acc-{model.parent.parent.name}-{model.stem}-{target}-{emulate or 'host'}.json"
    cmd = [sys.executable, "-m", "compressor", "bench", str(model), "--target", target, "--data", "fashion-mnist",
           "--samples", str(samples), "--threads", "1", "--out", str(out), "--warmup", "1", "--iterations", "5",
           "--min-duration", "0"]
    if emulate:
        cmd += ["--emulate-cpu", emulate]
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads(out.read_text())["results"][0]["accuracy"]["value"]


def speed(models: dict[str, Path], threads: int) -> dict[str, float]:
    from compressor.bench.latency import measure_interleaved
    from compressor.data import fit_to_shape, load_split
    from compressor.targets.onnxruntime_cpu import OrtSession

    x = fit_to_shape(load_split("fashion-mnist", "test", 1), [1, 1, 28, 28]).first(1)
    sessions = {k: OrtSession(p, threads, {}) for k, p in models.items()}
    calls = {k: (lambda s=s: s.run({s.input_names[0]: next(iter(x.values()))})) for k, s in sessions.items()}
    timing = measure_interleaved(calls, rounds=30, per_round=20)
    return {k: timing.speedup(k) for k in models} | {"fp32_p50_ms": timing.stats["FP32"].p50}


def main() -> None:
    from compressor.targets.devices import detect_host

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--openvino", action="store_true", help="also score U8S8 and reduce_range on openvino-cpu")
    args = ap.parse_args()
    host = detect_host()
    models = quantize_all(args.samples)
    models = {"FP32": models.pop("FP32"), **models}
    rows = {}
    for name, path in models.items():
        # FP32 kernels do not saturate: the FP32 row is scored on the host only (emulating it
        # would cost minutes and measure float rounding)
        fp32 = name == "FP32"
        rows[name] = {"host": accuracy(path, args.samples, "onnxruntime-cpu", None)}
        rows[name]["avx2"] = rows[name]["host"] if fp32 else accuracy(path, args.samples, "onnxruntime-cpu", "x86-64-avx2")
        if args.openvino and name in ("FP32", "U8S8", "U8S8 reduce_range"):
            rows[name]["ov_host"] = accuracy(path, args.samples, "openvino-cpu", None)
            rows[name]["ov_avx2"] = (rows[name]["ov_host"] if fp32
                                     else accuracy(path, args.samples, "openvino-cpu", "x86-64-avx2"))
        print(name, rows[name], flush=True)
    sp = speed(models, args.threads)
    when = dt.date.today().isoformat()
    cmd = "nice python benchmarks/device_formats.py " + " ".join(sys.argv[1:])
    lines = [f"# INT8 formats per kernel path: quickstart CNN, {args.samples} Fashion-MNIST test images", "",
             f"`{cmd.strip()}`, {when}, host {host.model} ({host.label}), {args.threads} threads for latency, "
             "1 thread for accuracy. The AVX2 column runs ONNX Runtime's AVX2 kernels under qemu's Haswell model "
             "(`compressor bench --emulate-cpu x86-64-avx2`); the FP32 row's AVX2 figure is the host's (FP32 kernels "
             "do not saturate). Latency is this host's only.", "",
             f"| format | top-1 {host.label} | drop | top-1 AVX2 path | drop | ORT speedup vs FP32 on {host.label} |",
             "|---|---|---|---|---|---|"]
    f = rows["FP32"]
    for name, r in rows.items():
        lines.append(f"| {name} | {100 * r['host']:.2f}% | {100 * (f['host'] - r['host']):+.2f} pp | "
                     f"{100 * r['avx2']:.2f}% | {100 * (f['avx2'] - r['avx2']):+.2f} pp | {sp[name]:.2f}x |")
    if args.openvino:
        lines += ["", "| OpenVINO | top-1 host | top-1 AVX2 path |", "|---|---|---|"]
        lines += [f"| {n} | {100 * r['ov_host']:.2f}% | {100 * r['ov_avx2']:.2f}% |" for n, r in rows.items() if "ov_host" in r]
    lines += ["", f"FP32 p50 {sp['fp32_p50_ms']:.3f} ms (batch 1)."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_formats.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "device_formats.json").write_text(json.dumps(
        {"date": when, "command": cmd.strip(), "host": host.describe(), "rows": rows, "speedup": sp}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
