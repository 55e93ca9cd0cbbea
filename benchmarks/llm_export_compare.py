"""The generic decoder export (transformers' own forward, ``compressor.export.decoder``)
against the hand-written Llama forward it replaced, side by side on ONNX Runtime and
OpenVINO: perplexity, prefill ms and decode tokens/s, all sessions in one process and the
decode timed interleaved (round r runs every graph once before round r+1 starts).

The hand-written exporter is read from git (``--ref-rev``, the last commit that had it),
so the comparison re-runs after its deletion.

    python benchmarks/llm_export_compare.py    # after `make llm`; ~10 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout (and examples/) on sys.path

from compressor.recipe.schema import TextEvalSpec  # noqa: E402

MODEL = ROOT / "examples/weights/smollm2-135m-instruct"
TEXT = ROOT / "examples/data/canterbury/lcet10.txt"
TEXT_SPEC = TextEvalSpec(max_tokens=2048, window=512, stride=256)
REF_REV = "388d06e"  # main before the generic export: compressor/export/decoder.py re-stated Llama


def handwritten_exporter(rev: str):
    """The old ``export_decoder`` from ``rev``, imported from a temporary file."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:compressor/export/decoder.py"],
                         check=True, capture_output=True, text=True).stdout
    path = ROOT / "benchmarks/out/export_compare/_handwritten_decoder.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("handwritten_decoder", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.export_decoder


GRAPHS = ("handwritten", "generic-sdpa", "generic-eager")


def build(out: Path, rev: str, graphs: list[str]) -> dict[str, Path]:
    """name -> ONNX file: the hand-written graph and the generic one (sdpa and eager attention);
    files already in ``out`` are reused (exports take minutes on a busy machine)."""
    from compressor.export.decoder import export_decoder
    from compressor.models.llm import load_hf_folder

    llm = load_hf_folder(MODEL)
    files = {name: out / f"{name}.onnx" for name in graphs}
    timings = {}
    for name, path in files.items():
        if path.exists():
            continue
        t0 = time.perf_counter()
        if name == "handwritten":
            handwritten_exporter(rev)(llm.model, path)
        else:
            export_decoder(llm.model, path, attention=name.split("-")[1])
        timings[name] = round(time.perf_counter() - t0, 1)
    print("export seconds", timings, flush=True)
    return files


def sessions(files: dict[str, Path], threads: int) -> dict[str, object]:
    from compressor.targets.onnxruntime_cpu import OrtSession
    from compressor.targets.openvino_cpu import OpenVinoSession, write_ir

    out = {}
    for name, path in files.items():
        out[f"ort/{name}"] = OrtSession(path, threads, {})
        xml = path.with_suffix(".xml")
        if not xml.exists():
            write_ir(path, xml)
        out[f"ov/{name}"] = OpenVinoSession(xml, threads=threads, precision_hint="f32")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/export_compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ref-rev", default=REF_REV)
    ap.add_argument("--graphs", default=",".join(GRAPHS), help="comma-separated subset of " + ", ".join(GRAPHS))
    ap.add_argument("--steps", type=int, default=32, help="decode steps per round and graph")
    ap.add_argument("--skip-perplexity", action="store_true", help="decode speed only (less memory and time)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/llm_export_compare.json")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import onnx
    from transformers import AutoTokenizer

    from compressor.bench.environment import describe_environment
    from compressor.bench.llm import Decoder, perplexity
    from compressor.data.text import split_text
    from compressor.export.decoder import cache_layout
    from transformers import AutoConfig

    files = build(args.out, args.ref_rev, args.graphs.split(","))
    nodes = {n: len(onnx.load(str(p), load_external_data=False).graph.node) for n, p in files.items()}
    shape = cache_layout(AutoConfig.from_pretrained(MODEL))
    text = split_text(AutoTokenizer.from_pretrained(MODEL), TEXT, TEXT_SPEC)
    decs = {k: Decoder(s, shape) for k, s in sessions(files, args.threads).items()}
    res: dict[str, dict] = {k: {} for k in decs}
    for k, dec in decs.items():
        if args.skip_perplexity:
            break
        ppl, n = perplexity(dec, text.evaluation, TEXT_SPEC.window, TEXT_SPEC.stride, text.bos)
        res[k].update(perplexity=ppl, perplexity_tokens=n)
        print(k, f"ppl {ppl:.4f}", flush=True)
    prompt = np.resize(text.evaluation, 128)
    for k, dec in decs.items():  # warm-up
        logits, past = dec(prompt, dec.empty())
        dec(np.array([int(logits[0, -1].argmax())]), past)
    for r in range(args.rounds):
        for k, dec in decs.items():
            t0 = time.perf_counter()
            logits, past = dec(prompt, dec.empty())
            res[k].setdefault("prefill_ms", []).append((time.perf_counter() - t0) * 1000)
            steps = []
            for _ in range(args.steps):
                nxt = np.array([int(logits[0, -1].argmax())])
                t0 = time.perf_counter()
                logits, past = dec(nxt, past)
                steps.append(time.perf_counter() - t0)
            res[k].setdefault("decode_tokens_per_s", []).append(len(steps) / sum(steps))
        print("round", r + 1, {k: round(v["decode_tokens_per_s"][-1], 1) for k, v in res.items()}, flush=True)
    for k, v in res.items():
        ref = res[k.split("/")[0] + "/handwritten"]
        v["decode_vs_handwritten_per_round"] = [a / b for a, b in zip(v["decode_tokens_per_s"], ref["decode_tokens_per_s"])]
        v["decode_vs_handwritten_median"] = float(np.median(v["decode_vs_handwritten_per_round"]))
        v["prefill_ms_median"] = float(np.median(v["prefill_ms"]))
        v["decode_tokens_per_s_median"] = float(np.median(v["decode_tokens_per_s"]))
    summary = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": "python benchmarks/llm_export_compare.py", "load_average": os.getloadavg(),
               "environment": describe_environment(args.threads), "onnx_nodes": nodes, "ref_rev": args.ref_rev,
               "text": f"{TEXT.name}, {len(text.evaluation)} tokens, window {TEXT_SPEC.window}, "
                       f"stride {TEXT_SPEC.stride}, bos {text.bos}",
               "timing": f"prefill 128 tokens, then {args.steps} decode steps; {args.rounds} rounds interleaved",
               "results": res}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"| graph | nodes | ppl ORT | ppl OV | prefill 128 ms ORT / OV | decode tok/s ORT / OV (median) "
             "| decode vs hand-written ORT / OV |", "|---|---|---|---|---|---|---|"]
    for name in files:
        o, v = res[f"ort/{name}"], res[f"ov/{name}"]
        ppl = [f"{m['perplexity']:.4f}" if "perplexity" in m else "-" for m in (o, v)]
        lines.append(f"| {name} | {nodes[name]} | {ppl[0]} | {ppl[1]} | "
                     f"{o['prefill_ms_median']:.0f} / {v['prefill_ms_median']:.0f} | "
                     f"{o['decode_tokens_per_s_median']:.1f} / {v['decode_tokens_per_s_median']:.1f} | "
                     f"{o['decode_vs_handwritten_median']:.2f}x / {v['decode_vs_handwritten_median']:.2f}x |")
    args.results.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
