"""MobileNetV2 U8S8 for `ort-mobile` (an arm64 phone): which kernels score it how.

The recipes/mobilenet_v2.yaml model (real ImageNet weights, real photo crops, its quantize
step with U8 activations x S8 weights per channel pinned) is compiled for `ort-mobile` by
`compressor run`, which scores the INT8 `.ort` file under qemu-aarch64 with ONNX Runtime's
aarch64 build (`accuracy_kernels: emulated-arm64`, the product path) and records what this
host's kernels gave. The same file is then scored on:

- x86 AVX2 kernels (saturating 16-bit sums, VPMADDUBSW) under qemu's Haswell model
  (`compressor bench --emulate-cpu x86-64-avx2`; on an AVX2-only host that is its own path);
- the Q/DQ float simulation: the QDQ `.onnx` with every ONNX Runtime graph optimization off,
  so each DequantizeLinear feeds a float Conv (no integer kernel, no saturation).

The metric is top-1 agreement with the FP32 model on the recipe's evaluation crops.

    nice python benchmarks/mobilenet_arm64.py [--samples 200] [--avx2-samples 200] [--reuse]

``--reuse`` keeps the run folder and the `compressor bench` reports already in
benchmarks/out/mobilenet_arm64/ (e.g. an AVX2 run started by hand) instead of measuring again.

Writes benchmarks/out/mobilenet_arm64/ and benchmarks/results/mobilenet_arm64.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout (and examples/) on sys.path
OUT = ROOT / "benchmarks" / "out" / "mobilenet_arm64"
RESULTS = ROOT / "benchmarks" / "results"
U8S8 = {"activation_type": "uint8", "weight_type": "int8", "per_channel": True}


def compile_for_ort_mobile(samples: int, reuse: bool) -> Path:
    """`compressor run` of the MobileNetV2 recipe for ort-mobile with U8S8 pinned; its run folder."""
    import yaml

    if reuse and (OUT / "run" / "report.json").exists():
        return OUT / "run"
    recipe = yaml.safe_load((ROOT / "recipes" / "mobilenet_v2.yaml").read_text())
    recipe["name"] = "mobilenet_v2-ort-mobile"
    recipe["steps"][0]["quantize"].update(U8S8)
    recipe["targets"] = ["ort-mobile"]
    recipe["data"]["evaluation"]["samples"] = samples
    recipe["benchmark"].update(warmup=2, iterations=5, min_duration_s=0.0)
    recipe.pop("gates", None)
    path = OUT / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    run_dir = OUT / "run"
    cmd = [sys.executable, "-m", "compressor", "run", str(path), "--out", str(run_dir), "-q"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return run_dir


def eval_npz(run_dir: Path, samples: int) -> Path:
    """The evaluation crops with the FP32 model's top-1 as labels (top1 = agreement)."""
    from photos import photo_crops

    from compressor.targets.onnxruntime_cpu import OrtSession

    x = photo_crops("test", samples).inputs["input"]
    fp32 = OrtSession(run_dir / "artifacts" / "baseline.onnx", 2, {})
    ref = np.concatenate([fp32.run({"input": x[i:i + 16]})[0] for i in range(0, len(x), 16)])
    path = OUT / f"crops-{samples}.npz"
    np.savez(path, x=x, y=ref.argmax(1))
    return path


def bench(model: Path, data: Path, target: str, emulate: str | None, samples: int,
          reuse: bool = False) -> tuple[float, float | None]:
    """``compressor bench`` top-1 (= agreement) and its wall seconds (None when reused)."""
    out = OUT / f"bench-{model.stem}-{target}-{emulate or 'host'}-{samples}.json"
    if reuse and out.exists():  # its time: the arm64 scorer's own, where it ran one
        row = json.loads(out.read_text())["results"][0]
        return row["accuracy"]["value"], (row["device"].get("emulation") or {}).get("seconds")
    cmd = [sys.executable, "-m", "compressor", "bench", str(model), "--target", target, "--data", str(data),
           "--samples", str(samples), "--threads", "1", "--warmup", "1", "--iterations", "2", "--min-duration", "0",
           "--out", str(out)]
    if emulate:
        cmd += ["--emulate-cpu", emulate]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    return json.loads(out.read_text())["results"][0]["accuracy"]["value"], time.perf_counter() - start


def qdq_float(model: Path, data: Path, first: int | None = None) -> float:
    """Agreement of the QDQ model run as float: graph optimizations off, so no integer kernel runs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    with np.load(data) as z:
        x, labels = z["x"][:first], z["y"][:first]
    out = np.concatenate([sess.run(None, {"input": x[i:i + 16]})[0] for i in range(0, len(x), 16)])
    return float(np.mean(out.argmax(1) == labels))


def host_kernels(ort_file: Path, data: Path, first: int) -> float:
    """Agreement of the .ort file on this host's ONNX Runtime kernels over the first ``first`` crops."""
    import onnxruntime as ort

    from compressor.utils.ort_sessions import KEEP_FLOAT_NODES

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(ort_file), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(KEEP_FLOAT_NODES))
    with np.load(data) as z:
        x, labels = z["x"][:first], z["y"][:first]
    out = np.concatenate([sess.run(None, {"input": x[i:i + 16]})[0] for i in range(0, len(x), 16)])
    return float(np.mean(out.argmax(1) == labels))


def host_description() -> dict[str, str]:
    from compressor.targets.devices import detect_host

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    info = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    cpu = ", ".join(info.get(k, "?").strip() for k in ("Vendor ID", "Model name", "CPU family", "Model"))
    return {"cpu": cpu, "kernels": detect_host().label, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200, help="evaluation crops (the recipe's 200)")
    p.add_argument("--avx2-samples", type=int, default=200, help="crops for the slow AVX2-under-qemu run (0: skip)")
    p.add_argument("--reuse", action="store_true", help="keep finished runs in benchmarks/out/mobilenet_arm64")
    args = p.parse_args()
    started = dt.datetime.now(dt.timezone.utc)
    host = host_description()
    run_dir = compile_for_ort_mobile(args.samples, args.reuse)
    report = json.loads((run_dir / "report.json").read_text())
    int8 = next(r for r in report["results"] if r["variant"] == "compressed")
    data = eval_npz(run_dir, args.samples)
    ort_file = run_dir / "artifacts" / "ort-mobile" / "compressed.ort"
    rows = {
        "arm64 cortex-a76 (dotprod), qemu-aarch64: `compressor run` (product path)":
            (int8["accuracy"]["value"], int8["accuracy_kernels"], int8["device"].get("emulation", {}).get("seconds")),
        f"this host's kernels ({host['kernels']})":
            (int8["device"].get("host_kernels_accuracy"), "host", None),
        "Q/DQ float simulation (no integer kernels)": (qdq_float(run_dir / "artifacts" / "00-quantize.onnx", data),
                                                      "float", None),
    }
    acc, secs = bench(ort_file, data, "ort-mobile", "arm64", args.samples, args.reuse)
    name = "arm64 cortex-a53 (no dotprod), qemu-aarch64: `compressor bench --emulate-cpu arm64`"
    rows[name] = (acc, "emulated-arm64", secs)
    if args.avx2_samples:
        acc, secs = bench(ort_file, data, "ort-mobile", "x86-64-avx2", args.avx2_samples, args.reuse)
        rows[f"x86 AVX2 (Haswell), qemu-x86_64, first {args.avx2_samples} crops"] = (acc, "emulated", secs)
        if args.avx2_samples != args.samples:  # the same crops on non-saturating kernels, to compare with
            rows[f"this host's kernels ({host['kernels']}), first {args.avx2_samples} crops"] = (
                host_kernels(ort_file, data, args.avx2_samples), "host", None)
            rows[f"Q/DQ float simulation, first {args.avx2_samples} crops"] = (
                qdq_float(run_dir / "artifacts" / "00-quantize.onnx", data, args.avx2_samples), "float", None)
    result = {"date": started.isoformat(timespec="seconds"), "host": host, "samples": args.samples,
              "command": " ".join(["nice python benchmarks/mobilenet_arm64.py", *sys.argv[1:]]),
              "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
              "fp32_self_agreement": report["results"][0]["accuracy"]["value"],
              "rows": {k: {"agreement": v[0], "kernels": v[1], "seconds": v[2]} for k, v in rows.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mobilenet_arm64.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "mobilenet_arm64.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    lines = ["# MobileNetV2 U8S8 for ort-mobile: arm64 kernels under emulation vs x86 kernels", "",
             f"`{r.get('command', 'nice python benchmarks/mobilenet_arm64.py')}` on {r['date']}"
             + (" (--reuse: the runs already in benchmarks/out/mobilenet_arm64 were measured earlier that day)"
                if "--reuse" in r.get("command", "") else "") + f"; CPU: {r['host']['cpu']} "
             f"({r['host']['kernels']}); load average {r['host']['load']} at the start, {r['load_end']} at the end.",
             f"Top-1 agreement with the FP32 model on {r['samples']} real photo crops (recipes/mobilenet_v2.yaml's "
             "evaluation split), one INT8 file (`compressed.ort`, U8 activations x S8 weights per channel).", "",
             "| kernels | top-1 agreement | accuracy_kernels | s |", "|---|---|---|---|"]
    for name, row in r["rows"].items():
        agree = "-" if row["agreement"] is None else f"{100 * row['agreement']:.1f}%"
        secs = "-" if row["seconds"] is None else f"{row['seconds']:.0f}"
        lines.append(f"| {name} | {agree} | {row['kernels']} | {secs} |")
    lines += ["", "s: seconds the arm64 scorer ran under qemu (its own clock; the machine was shared). "
              "The float simulation is not what a device runs; it shows the saturation-free float reference."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
