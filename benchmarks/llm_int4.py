"""INT4/INT8 weight-only quantization of a decoder LLM, every algorithm the ``weight_quantize``
step has, on the real model: perplexity (the pipeline's text windows) and greedy agreement
per variant, then decode speed against FP32 interleaved in one process per runtime.

- ONNX Runtime (MatMulNBits): RTN sym/asym and group sizes, k-quant, ORT's GPTQ, HQQ (float
  zero points, rounded, or with the exact block-offset term), NNCF AWQ / scale estimation /
  sensitivity ratio on the ONNX model, INT8 per group / per channel, accuracy levels 0 and 4.
- OpenVINO (NNCF compress_weights): RTN, AWQ, scale estimation, GPTQ and their combinations,
  mixed INT8 by sensitivity (ratio), INT8 sym/asym; HQQ as u4 codes with float zero points.

Stages (each re-runnable; results merge into benchmarks/results/llm_int4_<model>.json/.md):

    python benchmarks/llm_int4.py --model smollm2                  # build + perplexity, every variant
    python benchmarks/llm_int4.py --model smollm2 --stage speed --only 'ort-(fp32|int8-g128|int4-hqq-g32-blocksum)$'
    python benchmarks/llm_int4.py --model gemma3 --only '^(ort|ov)-(fp32|int8-asym)$'

Perplexity is not timing-sensitive (run it under ``nice``); the speed stage loads FP32 and
the selected variants of one runtime into one process and decodes round-robin, so every
ratio is paired in time; it records the load average before and after. After `make llm`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import LLM_MODELS, LLM_TEXT, ROOT, llm_cache_shape, llm_session, lscpu_summary  # noqa: E402 - checkout first on sys.path

from compressor.recipe.schema import TextEvalSpec, WeightQuantizeConfig as W  # noqa: E402

MODELS, TEXT = dict(LLM_MODELS), LLM_TEXT
# the recipes' data.text (recipes/smollm2.yaml, gemma3.yaml); calibration: 16 windows of 128 tokens after them
TEXT_SPEC = TextEvalSpec(max_tokens=2048, window=512, stride=256, prompts=8, prompt_tokens=32, continuation_tokens=16)
A32 = {"group_size": 32, "symmetric": False}
VARIANTS: dict[str, tuple[str, W | None]] = {
    "ort-fp32": ("onnxruntime", None),
    "ort-int8-g128": ("onnxruntime", W(bits=8, group_size=128)),
    "ort-int8-g32": ("onnxruntime", W(bits=8, group_size=32)),
    "ort-int8-channel": ("onnxruntime", W(bits=8, group_size=-1)),
    "ort-int8-g128-acc0": ("onnxruntime", W(bits=8, group_size=128, accuracy_level=0)),
    "ort-int4-rtn-sym-g128": ("onnxruntime", W(group_size=128)),
    "ort-int4-rtn-asym-g32": ("onnxruntime", W(**A32)),
    "ort-int4-rtn-asym-g32-acc0": ("onnxruntime", W(**A32, accuracy_level=0)),
    "ort-int4-rtn-asym-g16": ("onnxruntime", W(group_size=16, symmetric=False)),
    "ort-int4-rtn-asym-g32-edges": ("onnxruntime", W(**A32, mixed="edges")),
    "ort-int4-kquant-asym-g32": ("onnxruntime", W(**A32, algorithm="k_quant")),
    "ort-int4-gptq-sym-g128": ("onnxruntime", W(group_size=128, algorithm="gptq")),
    "ort-int4-gptq-asym-g32": ("onnxruntime", W(**A32, algorithm="gptq")),
    "ort-int4-gptq-mse-asym-g32": ("onnxruntime", W(**A32, algorithm="gptq", scale_estimation=True)),
    "ort-int4-hqq-g32-float": ("onnxruntime", W(**A32, algorithm="hqq", hqq_zero_points="float")),
    "ort-int4-hqq-g32-integer": ("onnxruntime", W(**A32, algorithm="hqq", hqq_zero_points="integer")),
    "ort-int4-hqq-g32-blocksum": ("onnxruntime", W(**A32, algorithm="hqq")),
    "ort-int4-hqq-g32-blocksum-acc0": ("onnxruntime", W(**A32, algorithm="hqq", accuracy_level=0)),
    "ort-int4-hqq-g64-blocksum": ("onnxruntime", W(group_size=64, symmetric=False, algorithm="hqq")),
    # mixed INT4/INT8: the layers HQQ fits worst stay INT8 (ratio = share of weights at INT4)
    "ort-int4-hqq-g32-blocksum-r90": ("onnxruntime", W(**A32, algorithm="hqq", ratio=0.9)),
    "ort-int4-hqq-g32-blocksum-r80": ("onnxruntime", W(**A32, algorithm="hqq", ratio=0.8)),
    "ort-int4-hqq-g32-blocksum-r70": ("onnxruntime", W(**A32, algorithm="hqq", ratio=0.7)),
    "ort-int4-hqq-g128-blocksum": ("onnxruntime", W(group_size=128, symmetric=False, algorithm="hqq")),
    "ort-int4-nncf-awq-se-asym-g32": ("onnxruntime", W(**A32, awq=True, scale_estimation=True)),
    "ort-int4-nncf-se-sym-g64": ("onnxruntime", W(group_size=64, scale_estimation=True)),
    "ort-int4-nncf-ratio80-asym-g32": ("onnxruntime", W(**A32, ratio=0.8)),
    "ort-int4-hqq-g32-blocksum-head4": ("onnxruntime", W(**A32, algorithm="hqq", mixed="none")),
    "ort-int4-rtn-asym-g32-head4": ("onnxruntime", W(**A32, mixed="none")),
    "ov-fp32": ("openvino", None),
    "ov-int8-asym": ("openvino", W(bits=8, symmetric=False)),
    "ov-int8-sym": ("openvino", W(bits=8)),
    "ov-int4-rtn-sym-g128": ("openvino", W(group_size=128)),
    "ov-int4-rtn-sym-g64": ("openvino", W(group_size=64)),
    "ov-int4-rtn-asym-g32": ("openvino", W(**A32)),
    "ov-int4-awq-asym-g32": ("openvino", W(**A32, awq=True)),
    "ov-int4-se-asym-g32": ("openvino", W(**A32, scale_estimation=True)),
    "ov-int4-awq-se-asym-g32": ("openvino", W(**A32, awq=True, scale_estimation=True)),
    "ov-int4-awq-se-sym-g64": ("openvino", W(group_size=64, awq=True, scale_estimation=True)),
    "ov-int4-gptq-asym-g32": ("openvino", W(**A32, algorithm="gptq")),
    "ov-int4-gptq-se-asym-g32": ("openvino", W(**A32, algorithm="gptq", scale_estimation=True)),
    "ov-int4-ratio80-asym-g32": ("openvino", W(**A32, ratio=0.8)),
    "ov-int4-awq-se-ratio80-asym-g32": ("openvino", W(**A32, awq=True, scale_estimation=True, ratio=0.8)),
    "ov-int4-awq-se-asym-g32-all4": ("openvino", W(**A32, awq=True, scale_estimation=True, mixed="none")),
    "ov-int4-hqq-g32": ("openvino", W(**A32, algorithm="hqq")),
    "ov-int4-hqq-g64": ("openvino", W(group_size=64, symmetric=False, algorithm="hqq")),
    "ov-int4-hqq-g32-r80": ("openvino", W(**A32, algorithm="hqq", ratio=0.8)),
    "ov-int4-hqq-g32-head4": ("openvino", W(**A32, algorithm="hqq", mixed="none")),
}


def selected(pattern: str | None) -> list[str]:
    return [n for n in VARIANTS if not pattern or re.search(pattern, n)]


def prepare(model: str, out: Path) -> dict:
    """FP32 export (once), text splits, FP32 greedy continuations, calibration feeds: data.json."""
    from compressor.data.text import split_text
    from compressor.export.decoder import export_decoder
    from compressor.models.llm import load_hf_folder

    folder = MODELS[model]
    base = out / "fp32.onnx"
    if not base.exists():
        export_decoder(load_hf_folder(folder).model, base)
    if (out / "data.json").exists():
        return json.loads((out / "data.json").read_text())
    from compressor.bench.llm import Decoder, greedy
    from transformers import AutoTokenizer

    text = split_text(AutoTokenizer.from_pretrained(folder), TEXT, TEXT_SPEC)
    ref = Decoder(llm_session(base, 2), llm_cache_shape(folder))
    data = {"tokens": text.evaluation.tolist(), "bos": text.bos, "prompts": [p.tolist() for p in text.prompts],
            "continuations": [greedy(ref, p, TEXT_SPEC.continuation_tokens).tolist() for p in text.prompts],
            "calibration": [c.tolist() for c in text.calibration], "tokenization": text.tokenization}
    (out / "data.json").write_text(json.dumps(data))
    return data


def build_one(model: str, name: str, out: Path, data: dict) -> dict:
    """The variant's model file (kept when it exists); returns {path, runtime, build_s, size_bytes, details}."""
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino
    from compressor.steps.weight_only.step import calibration_feeds
    from compressor.targets.openvino_cpu import write_ir

    runtime, cfg = VARIANTS[name]
    base, shape = out / "fp32.onnx", llm_cache_shape(MODELS[model])
    path = (base if runtime == "onnxruntime" else out / "fp32.xml") if cfg is None else \
        out / f"{name}.{'onnx' if runtime == 'onnxruntime' else 'xml'}"
    t0, details = time.perf_counter(), {}
    if cfg is None and runtime == "openvino" and not path.exists():
        write_ir(base, path)
    elif cfg is not None and not path.exists():
        class _Text:  # calibration_feeds reads .calibration
            calibration = [np.asarray(c, np.int64) for c in data["calibration"]]

        feeds = calibration_feeds(_Text, shape)
        quant = quantize_matmul_nbits if runtime == "onnxruntime" else compress_openvino
        details = quant(base, path, cfg, shape[2], feeds)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path, Path(f"{path}.data")]
    return {"path": str(path), "runtime": runtime, "build_s": round(time.perf_counter() - t0, 1),
            "size_bytes": sum(f.stat().st_size for f in files if f.exists()), "details": details,
            "config": cfg.model_dump(exclude_defaults=True) if cfg else None}


def measure_quality(model: str, entry: dict, data: dict, threads: int) -> dict:
    """In a fresh process: perplexity (pipeline windows) and greedy agreement with FP32."""
    from compressor.bench import llm

    dec = llm.Decoder(llm_session(Path(entry["path"]), threads), llm_cache_shape(MODELS[model]))
    t0 = time.perf_counter()
    ppl, n = llm.perplexity(dec, np.asarray(data["tokens"], np.int64), TEXT_SPEC.window, TEXT_SPEC.stride,
                            data["bos"])
    prompts = [np.asarray(p, np.int64) for p in data["prompts"]]
    conts = [np.asarray(c, np.int64) for c in data["continuations"]]
    return {"perplexity": ppl, "perplexity_tokens": n, "next_token_agreement": llm.agreement(dec, prompts, conts),
            "quality_s": round(time.perf_counter() - t0, 1)}


def measure_speed(model: str, entries: dict[str, dict], data: dict, threads: int, rounds: int,
                  tokens: int) -> dict[str, dict]:
    """Round-robin decode over the loaded variants (FP32 first in each round): per variant the
    mean tokens/s of each round, and its ratio to FP32 within the same round (paired)."""
    from compressor.bench import llm

    decs = {n: llm.Decoder(llm_session(Path(e["path"]), threads), llm_cache_shape(MODELS[model]))
            for n, e in entries.items()}
    prompt = np.resize(np.asarray(data["tokens"], np.int64), 128)

    def tokens_per_s(d: llm.Decoder, n: int) -> float:  # greedy decode after a 128-token prefill
        logits, past = d(prompt, d.empty())
        t0 = time.perf_counter()
        for _ in range(n):
            logits, past = d(np.array([int(logits[0, -1].argmax())]), past)
        return n / (time.perf_counter() - t0)

    per_round: dict[str, list[float]] = {n: [] for n in decs}
    for d in decs.values():  # warm-up
        tokens_per_s(d, 4)
    for _ in range(rounds):
        for n, d in decs.items():
            per_round[n].append(tokens_per_s(d, tokens))
    fp32 = next(n for n in decs if n.endswith("-fp32"))
    return {n: {"decode_tokens_per_s": float(np.median(v)), "decode_rounds": [round(x, 2) for x in v],
                "decode_vs_fp32": float(np.median(np.asarray(v) / np.asarray(per_round[fp32])))}
            for n, v in per_round.items()}


def child(args: argparse.Namespace, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--model", args.model, "--out", str(args.out), "--threads", str(args.threads),
           *(["--model-dir", str(args.model_dir)] if args.model_dir else []), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"variants": {}, "speed_runs": []}


def markdown(res: dict, model: str) -> str:
    v = res["variants"]
    lines = [f"# {model}: weight-only INT4/INT8 variants (benchmarks/llm_int4.py)", "",
             f"Model: {res.get('model_note', '')}. Text: {res.get('text', '')}. CPU: {res.get('cpu', '?')}.", "",
             "Quality: `python benchmarks/llm_int4.py --model " + model + "` (each variant in a fresh process; "
             "perplexity does not depend on timing). Speed: the latest `--stage speed` run per runtime, FP32 and "
             "the variants decoding round-robin in one process (ratios paired within each round).", "",
             "| variant | ppl | ppl vs FP32 | agreement | decode tok/s | decode vs FP32 | size MB | build s | "
             "quality measured |", "|---|---|---|---|---|---|---|---|---|"]
    for name in VARIANTS:
        r = v.get(name)
        if r is None:
            continue
        fp = v.get("ov-fp32" if name.startswith("ov-") else "ort-fp32", {})
        if "perplexity" not in r:
            lines.append(f"| {name} | {r.get('error', 'not measured')} |" + " |" * 7)
            continue
        rel = (r["perplexity"] / fp["perplexity"] - 1) * 100 if "perplexity" in fp else float("nan")
        sp = r.get("speed", {})
        lines.append(f"| {name} | {r['perplexity']:.3f} | {rel:+.2f}% | {r['next_token_agreement']:.3f} | "
                     f"{sp.get('decode_tokens_per_s', float('nan')):.1f} | {sp.get('decode_vs_fp32', float('nan')):.2f}x"
                     f" | {r.get('size_bytes', 0) / 2**20:.1f} | {r.get('build_s', '')} | {r.get('measured', '')} |")
    lines += ["", "Speed runs (decode, tokens/s per round; load average before / after):", ""]
    for s in res["speed_runs"]:
        lines.append(f"- {s['created']} `{s['command']}`: {s['cpu']}, {s['threads']} threads, nice {s['nice']}, "
                     f"{s['rounds']} rounds x {s['tokens']} tokens, load {s['load_before']} / {s['load_after']}: "
                     + ", ".join(f"{n} {x['decode_tokens_per_s']:.1f} ({x['decode_vs_fp32']:.2f}x)"
                                 for n, x in s["results"].items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(MODELS), default="smollm2")
    ap.add_argument("--model-dir", type=Path, help="another Hugging Face decoder folder under --model's name")
    ap.add_argument("--stage", choices=["quality", "speed"], default="quality")
    ap.add_argument("--only", help="regular expression over variant names (FP32 of each runtime is always added)")
    ap.add_argument("--force", action="store_true", help="measure quality again where a result exists")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, help="default: benchmarks/results/llm_int4_<model>.json")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32, help="decode tokens per variant per round")
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "NAME"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = args.out or ROOT / "benchmarks/out/llm_int4" / args.model
    if args.model_dir:
        MODELS[args.model] = args.model_dir.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:  # fresh process: build or measure one variant
        data = json.loads((args.out / "data.json").read_text())
        what, name = args.child
        if what == "build":
            print(json.dumps(build_one(args.model, name, args.out, data)))
        else:
            entry = json.loads((args.out / "built.json").read_text())[name]
            print(json.dumps(measure_quality(args.model, entry, data, args.threads)))
        return
    results_path = args.results or ROOT / f"benchmarks/results/llm_int4_{args.model}.json"
    res = load_results(results_path)
    data = prepare(args.model, args.out)
    names = selected(args.only)
    for fp in ("ort-fp32", "ov-fp32"):
        if any(n.startswith(fp[:3]) for n in names) and fp not in names:
            names.insert(0, fp)
    built_path = args.out / "built.json"
    built = json.loads(built_path.read_text()) if built_path.exists() else {}
    res.update(model_note=f"{MODELS[args.model].name} (FP32 = dequantized from the package's GGUF)",
               text=f"{TEXT.name}, {len(data['tokens'])} tokens, window {TEXT_SPEC.window}, stride {TEXT_SPEC.stride}, "
                    f"bos {data['bos']}; calibration {len(data['calibration'])} x {TEXT_SPEC.calibration_tokens} "
                    "tokens after them", cpu=lscpu_summary())
    for name in names:
        if name not in built or "error" in built[name]:
            built[name] = child(args, "--child", "build", name)
            built_path.write_text(json.dumps(built, indent=1))
    if args.stage == "quality":
        for name in names:
            old = res["variants"].get(name, {})
            if "perplexity" in old and not args.force:
                continue
            entry = built[name]
            q = entry if "error" in entry else child(args, "--child", "quality", name)
            res["variants"][name] = {**{k: v for k, v in entry.items() if k != "path"}, **q,
                                     "measured": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")}
            print(name, {k: v for k, v in res["variants"][name].items() if k not in ("details", "config")}, flush=True)
            results_path.write_text(json.dumps(res, indent=1) + "\n")
    else:
        for runtime in ("ort", "ov"):
            group = {n: built[n] for n in names if n.startswith(runtime + "-") and "error" not in built[n]}
            if len(group) < 2:
                continue
            load_before = [round(x, 2) for x in os.getloadavg()]
            speed = measure_speed(args.model, group, data, args.threads, args.rounds, args.tokens)
            run = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   "command": " ".join(["python benchmarks/llm_int4.py", *sys.argv[1:]]), "cpu": lscpu_summary(),
                   "threads": args.threads, "nice": os.nice(0), "rounds": args.rounds, "tokens": args.tokens,
                   "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()], "results": speed}
            res["speed_runs"].append(run)
            for n, s in speed.items():
                res["variants"].setdefault(n, {})["speed"] = {**s, "run": run["created"]}
            print(runtime, {n: (round(s["decode_tokens_per_s"], 1), round(s["decode_vs_fp32"], 2))
                            for n, s in speed.items()}, flush=True)
            results_path.write_text(json.dumps(res, indent=1) + "\n")
    results_path.with_suffix(".md").write_text(markdown(res, args.model))
    print(f"wrote {results_path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
