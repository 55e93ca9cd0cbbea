"""Which INT8 format for which CPU: the measurements behind compressor/targets/quant_defaults.py.

The quickstart CNN is quantized in four QDQ formats (all per channel): U8 activations x
S8 weights, U8 x U8, U8 x S8 with 7-bit weights (reduce_range) and S8 x S8 (ORT's
default). Each is scored on N Fashion-MNIST test images on two kernel paths: this host's
own, and AVX2's under qemu's Haswell model (`compressor bench --emulate-cpu x86-64-avx2`;
on a host without VNNI both are the AVX2 path). Latency is this host's only (emulated
time means nothing), every format and FP32 timed in interleaved rounds in one process.

    nice python benchmarks/device_formats.py [--samples 1000] [--openvino]

Writes benchmarks/results/device_formats.md (and .json) naming the host's instruction set.

    nice python benchmarks/device_formats.py --measured [--models quickstart,resnet18,mobilenet_v2,minilm]

runs the product's measured choice (`quantize: {choose: measure}`, targets onnxruntime-cpu and
openvino-cpu) on each model through `compressor run`, and writes every candidate's speed and
accuracy, what the tool chose, and the shipped model's speed in the run's own paired benchmark
to benchmarks/results/device_formats_measured.md (and .json), with the CPU family/model and load.
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


# model -> (recipe fields): the quantize step is plain static QDQ (the measured choice's candidates
# differ only in the format); accuracy limit = gates.max_accuracy_drop on the calibration data
PHOTOS = {"source": {"factory": "examples/photos.py:photo_crops"}, "calibration": {"split": "train", "samples": 64},
          "evaluation": {"split": "test", "samples": 200}, "metric": "top1_agreement"}
MEASURED_MODELS: dict[str, dict] = {
    "quickstart": {"model": {"factory": "examples/fashion_cnn.py:build",
                             "weights": "examples/weights/fashion_cnn.safetensors", "input_shape": [1, 1, 28, 28]},
                   "data": {"source": "fashion-mnist", "calibration": {"split": "train", "samples": 512},
                            "evaluation": {"split": "test", "samples": 2000}},
                   "quantize": {}, "max_drop": 0.5},
    "resnet18": {"model": {"factory": "examples/resnet18.py:build", "input_shape": [1, 3, 224, 224]},
                 "data": PHOTOS, "quantize": {}, "max_drop": 5.0},
    "mobilenet_v2": {"model": {"factory": "examples/mobilenet_v2.py:build", "factory_kwargs": {"pretrained": True},
                               "input_shape": [1, 3, 224, 224]},
                     "data": PHOTOS, "quantize": {"nodes_to_exclude": ["node_linear"]}, "max_drop": 15.0},
    "minilm": {"model": {"factory": "examples/minilm.py:build_classifier", "output_names": ["logits"], "inputs": [
        {"name": n, "shape": [1, 128], "dtype": "int64", "dynamic": {0: "batch", 1: "sequence"}}
        for n in ("input_ids", "attention_mask", "token_type_ids")]},
               "data": {"source": {"factory": "examples/minilm.py:tweets", "kwargs": {"seq_len": 128}},
                        "calibration": {"split": "train", "samples": 64}, "evaluation": {"split": "test", "samples": 300},
                        "metric": "top1"},
               "quantize": {"op_types": ["MatMul"]}, "max_drop": 1.0},
}


def recheck(name: str, run_dir: Path, threads: int, repeats: int) -> dict[str, dict]:
    """Re-time, after the run, every candidate format and the shipped model against FP32 on each
    target: the product's own quantizer and candidate timing (each candidate in its own pair with
    FP32), ``repeats`` times with the candidates' order rotated. Returns per target the median
    speedups, the best candidate that met the run's accuracy limit and shipped / best."""
    import hashlib

    import numpy as np

    from compressor.bench.formats import measure_candidates
    from compressor.data import fit_to_shape, load_split
    from compressor.recipe.schema import QuantizeConfig
    from compressor.report.model import load_report
    from compressor.steps.quantize.formats import FORMATS, RUNTIME_FORMATS
    from compressor.steps.quantize.onnxruntime_ptq import preprocess, quantize_onnx
    from compressor.targets.spec import load_target

    m = MEASURED_MODELS[name]
    report = load_report(run_dir)
    work = OUT / f"recheck-{name}"
    work.mkdir(parents=True, exist_ok=True)
    fp32 = run_dir / "artifacts" / "baseline.onnx"
    shape = m["model"].get("input_shape")
    calib = load_split(m["data"]["source"], m["data"]["calibration"]["split"], m["data"]["calibration"]["samples"],
                       seed=0, base_dir=ROOT / "recipes")
    calib = fit_to_shape(calib, shape) if shape else calib
    pre = work / "preprocessed.onnx"
    src = pre if preprocess(fp32, pre)["preprocess"] != "none" else fp32
    cfg = QuantizeConfig(mode="static", calibration="minmax", per_channel=True, **m["quantize"])
    out: dict[str, dict] = {}
    steps = [s for s in report.steps if s.get("kind") == "quantize"]
    for i, step in enumerate(steps):
        target, fc = step["details"]["targets"][0], step["details"]["format_choice"]
        if fc.get("source") != "measured":
            continue
        spec = load_target(target)
        cands = {}
        for label in RUNTIME_FORMATS[spec.runtime]:
            path = work / f"{target}-{label.replace(' ', '-').lower()}.onnx"
            if not path.is_file():
                quantize_onnx(src, path, cfg.model_copy(update=FORMATS[label]), calib, skip_preprocess=True)
            cands[label] = path
        shipped = run_dir / "artifacts" / f"00-quantize-g{i}.onnx"
        if not shipped.is_file():
            shipped = run_dir / "artifacts" / "00-quantize.onnx"
        same = {label for label, p in cands.items()
                if hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(shipped.read_bytes()).digest()}
        runs: dict[str, list[float]] = {k: [] for k in [*cands, "shipped"]}
        labels = list(cands)
        for r in range(repeats):
            order = labels[r % len(labels):] + labels[:r % len(labels)]
            models = {"FP32": fp32, **{k: cands[k] for k in order}, "shipped": shipped}
            timed = measure_candidates(spec, models, None, calib, threads=threads, batch_size=1,
                                       work=work / "compiled")
            for k in runs:
                if "speedup" in timed[k]:
                    runs[k].append(timed[k]["speedup"])
        med = {k: round(float(np.median(v)), 3) for k, v in runs.items() if v}
        passed = {c["label"] for c in fc["candidates"] if c.get("passed")}
        best = max((k for k in med if k in passed), key=lambda k: med[k], default=None)
        out[target] = {"median_speedup": med, "runs": runs, "chosen": fc["chosen"], "best_passing": best,
                       "shipped_equals": sorted(same), "repeats": repeats,
                       "shipped_vs_best": round(med["shipped"] / med[best], 3) if best else None}
        print(name, target, json.dumps(out[target]["median_speedup"]), "chosen", fc["chosen"], "best", best,
              "shipped/best", out[target]["shipped_vs_best"], flush=True)
    return out


def measured(names: list[str], threads: int, collect: bool = False, repeats: int = 0) -> None:
    """The product's measured format choice per model on this host (see the module docstring)."""
    import os
    import time

    import yaml

    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe
    from compressor.targets.devices import cpu_identity, detect_host

    host, cpu = detect_host(), cpu_identity()
    earlier = RESULTS / "device_formats_measured.json"
    rows: dict[str, dict] = json.loads(earlier.read_text())["rows"] if earlier.is_file() else {}
    for name in names:
        m = MEASURED_MODELS[name]
        recipe = {"name": f"measured-{name}", "model": m["model"], "data": m["data"],
                  "steps": [{"quantize": {"mode": "static", "calibration": "minmax", "per_channel": True,
                                          "choose": "measure", **m["quantize"]}}],
                  "targets": ["onnxruntime-cpu", "openvino-cpu"],
                  "benchmark": {"warmup": 5, "iterations": 30, "min_duration_s": 0.5, "batch_size": 1,
                                "threads": threads, "paired": True, "eval_batch_size": 16},
                  "gates": {"max_accuracy_drop": m["max_drop"]}}
        path = OUT / f"measured-{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        t0 = time.perf_counter()
        if collect:  # rebuild the rows from finished runs (a run killed later loses nothing before it)
            from compressor.report.model import load_report

            if not (OUT / f"measured-{name}" / "report.json").is_file():
                continue
            report = load_report(OUT / f"measured-{name}")
        else:
            try:  # relative paths resolve as in recipes/ (examples/...)
                report = run_recipe(load_recipe(path), recipe_path=ROOT / "recipes" / "quickstart.yaml",
                                    run_dir=OUT / f"measured-{name}")
            except Exception as e:  # noqa: BLE001 - one model that cannot run must not lose the others' rows
                print(f"{name}: {type(e).__name__}: {e}", flush=True)
                continue
        steps = [s for s in report.steps if s.get("kind") == "quantize"]
        per_target = {}
        for s in steps:
            d = s["details"]
            target = d["targets"][0]
            fc = d["format_choice"]
            shipped = next((r for r in report.results if r.target == target and r.precision == "int8"
                            and r.status == "ok"), None)
            if shipped is None or fc.get("source") != "measured":
                continue  # the runtime is not installed here
            best = max((c for c in fc["candidates"] if c.get("passed")), key=lambda c: c["speedup"], default=None)
            per_target[target] = {"choice": fc, "shipped_paired": shipped.paired.speedup if shipped.paired else None,
                                  "shipped_drop_eval": None if shipped.accuracy is None else shipped.accuracy.value,
                                  "best_candidate": best["label"] if best else None}
        if repeats:
            for target, check in recheck(name, OUT / f"measured-{name}", threads, repeats).items():
                per_target[target]["recheck"] = check
        rows[name] = {"targets": per_target, "verdict": report.int8_verdict,
                      "seconds": None if collect else round(time.perf_counter() - t0),
                      "measured_on": next((t["choice"].get("measured_on") for t in per_target.values()), None),
                      "results": [{"variant": r.variant, "target": r.target, "p50_ms": r.latency_ms.p50 if r.latency_ms
                                   else None, "accuracy": r.accuracy.value if r.accuracy else None}
                                  for r in report.results]}
        print(name, json.dumps(per_target, default=str)[:400], flush=True)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()
    cmd = "nice python benchmarks/device_formats.py " + " ".join(sys.argv[1:])
    ident = f"{cpu.get('model')} (vendor {cpu.get('vendor')}, family {cpu.get('family')} model {cpu.get('model_number')})"
    lines = ["# The measured INT8 format choice per model and runtime", "",
             f"`{cmd.strip()}`, {when}, {ident}, {host.label}, {threads} threads, batch 1, load average at the end "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; other jobs shared the 2 cores). "
             "Each candidate is timed interleaved against FP32 on its target (its own pair, 8-60 rounds) and scored on the calibration "
             "data; `shipped` is the chosen model's speedup in the run's own paired benchmark (30 rounds x 10).", "",
             "| model | target | " + " | ".join(["U8S8", "U8U8", "U8S8 reduce_range", "S8S8"])
             + " | chosen | shipped | INT8 pays |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        for target, t in row["targets"].items():
            cands = {c["label"]: c for c in t["choice"]["candidates"]}
            cells = []
            for label in ("U8S8", "U8U8", "U8S8 reduce_range", "S8S8"):
                c = cands.get(label)
                cells.append("-" if c is None else ("error" if c.get("error") else
                             f"{c['speedup']:.2f}x, {c['drop']:+.2f}" + ("" if c.get("passed") else " (fails)")))
            shipped = "-" if t["shipped_paired"] is None else f"{t['shipped_paired']:.2f}x"
            lines.append(f"| {name} | {target} | " + " | ".join(cells) + f" | {t['choice']['chosen']} | {shipped} | "
                         f"{'yes' if t['choice']['int8_pays'] else 'no'} |")
    checks = [(name, target, t["recheck"]) for name, row in rows.items() for target, t in row["targets"].items()
              if t.get("recheck")]
    if checks:
        lines += ["", "Re-timed after the run (`--recheck N`): every candidate and the shipped model against FP32, "
                  "each in its own interleaved pair, N times with the candidates' order rotated; medians. "
                  "`best passing`: the fastest re-timed candidate that met the run's accuracy limit.", "",
                  "| model | target | " + " | ".join(["U8S8", "U8U8", "U8S8 reduce_range", "S8S8"])
                  + " | shipped | chosen | best passing | shipped / best |", "|---|---|---|---|---|---|---|---|---|"]
        for name, target, c in checks:
            med = c["median_speedup"]
            cells = [f"{med[k]:.2f}x" if k in med else "-" for k in ("U8S8", "U8U8", "U8S8 reduce_range", "S8S8")]
            ratio = "-" if c["shipped_vs_best"] is None else f"{c['shipped_vs_best']:.3f}"
            lines.append(f"| {name} | {target} | " + " | ".join(cells) + f" | {med['shipped']:.2f}x | {c['chosen']} | "
                         f"{c['best_passing'] or '-'} | {ratio} |")
    lines += ["", "Cells: speedup over FP32 on that target, accuracy drop (points of the model's metric) on the "
              "calibration data; (fails): over the limit. The run's verdicts:", ""]
    lines += [f"- {name} (measured: {row.get('measured_on') or 'see the header'}): "
              f"{row['verdict']['line'] if row['verdict'] else '-'}" for name, row in rows.items()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_formats_measured.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "device_formats_measured.json").write_text(json.dumps(
        {"date": when, "command": cmd.strip(), "cpu": cpu, "host": host.describe(), "load": load, "rows": rows},
        indent=2, default=str) + "\n")
    print("\n".join(lines))


def main() -> None:
    from compressor.targets.devices import detect_host

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--openvino", action="store_true", help="also score U8S8 and reduce_range on openvino-cpu")
    ap.add_argument("--measured", action="store_true", help="the product's measured choice per model (see above)")
    ap.add_argument("--models", default=",".join(MEASURED_MODELS), help="with --measured: comma-separated models")
    ap.add_argument("--collect", action="store_true", help="with --measured: tables from the finished runs only")
    ap.add_argument("--recheck", type=int, default=0, metavar="N",
                    help="with --measured: re-time every candidate and the shipped model N times after the run")
    args = ap.parse_args()
    if args.measured:
        measured(args.models.split(","), args.threads, args.collect, args.recheck)
        return
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
