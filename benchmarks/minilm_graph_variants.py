"""MiniLM (seq 128, batch 1) graph variants on ONNX Runtime, timed interleaved in one process:
the choices behind examples/minilm.py and targets/onnxruntime-cpu.yaml.

- attention: transformers' "sdpa" vs "eager" attention, both through the dynamo exporter
- SkipLayerNormFusion on vs off (the onnxruntime-cpu target turns it off)
- the path not taken: TorchScript exporter + ORT's transformer optimizer (Attention fusion),
  dynamic INT8 with QAttention

    nice python benchmarks/minilm_graph_variants.py [--rounds 8]

Results: benchmarks/results/minilm_graph_variants.md (outputs in benchmarks/out/minilm_graph_variants/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import warnings
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path
OUT = ROOT / "benchmarks" / "out" / "minilm_graph_variants"
RESULT = ROOT / "benchmarks" / "results" / "minilm_graph_variants.md"
SPECS = [{"name": n, "shape": [1, 128], "dtype": "int64", "dynamic": {0: "batch", 1: "sequence"}}
         for n in ("input_ids", "attention_mask", "token_type_ids")]


def build(attention: str):
    import minilm

    saved = minilm.ATTENTION
    minilm.ATTENTION = attention
    try:
        return minilm.build_classifier()
    finally:
        minilm.ATTENTION = saved


def _drop_initializer_value_info(src: Path, dst: Path) -> Path:
    """The copy of ``src`` ORT's quantizer can read: without the value_info the dynamo exporter
    records for initializers (the quantizer rewrites them, then shape inference fails)."""
    import onnx

    model = onnx.load(str(src))
    inits = {i.name for i in model.graph.initializer}
    kept = [v for v in model.graph.value_info if v.name not in inits]
    if len(kept) == len(model.graph.value_info):
        return src
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
    onnx.save(model, str(dst))
    return dst


def dynamic_int8(src: Path, dst: Path, op_types: list[str]) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    clean = _drop_initializer_value_info(src, dst.with_suffix(".clean.onnx"))
    quantize_dynamic(str(clean), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def export_all(sample: dict[str, np.ndarray]) -> dict[str, Path]:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    from compressor.export.onnx_export import export_onnx

    OUT.mkdir(parents=True, exist_ok=True)
    m: dict[str, Path] = {}
    for attn in ("sdpa", "eager"):
        m[f"{attn} fp32"] = export_onnx(build(attn), OUT / f"{attn}.onnx", SPECS, output_names=["logits"], sample=sample)
        m[f"{attn} int8"] = dynamic_int8(m[f"{attn} fp32"], OUT / f"{attn}-int8.onnx", ["MatMul"])
    ts = OUT / "torchscript.onnx"
    names = [s["name"] for s in SPECS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build("eager"), tuple(torch.as_tensor(sample[n]) for n in names), str(ts), dynamo=False,
                          input_names=names, output_names=["logits"], opset_version=17,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names})
        fused = optimize_model(str(ts), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    m["torchscript+fused fp32"] = OUT / "torchscript-fused.onnx"
    fused.save_model_to_file(str(m["torchscript+fused fp32"]))
    m["torchscript+fused int8 (QAttention)"] = dynamic_int8(m["torchscript+fused fp32"], OUT / "torchscript-fused-int8.onnx",
                                                            ["MatMul", "Attention"])
    return m


def main() -> None:
    import minilm

    from compressor.bench.paired import time_interleaved
    from compressor.targets.onnxruntime_cpu import OrtSession

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=15)
    args = ap.parse_args()
    data = minilm.tweets("test", samples=2)
    models = export_all(data.inputs)
    sessions = {}
    for name, path in models.items():
        for sln in ("on", "off"):
            opts = {"disabled_optimizers": [] if sln == "on" else ["SkipLayerNormFusion"]}
            sessions[f"{name}|{sln}"] = OrtSession(path, 2, opts)
    # interleaved: every variant sees the same host conditions (the product's paired timing)
    timing = time_interleaved(sessions, data.subset(1), rounds=args.rounds, per_round=args.per_round, warmup=10)
    base = timing.stats["sdpa fp32|on"].p50
    lines = ["# MiniLM graph variants on ONNX Runtime (seq 128, batch 1, 2 threads)", "",
             f"Measured {dt.date.today().isoformat()}, 1-minute load {os.getloadavg()[0]:.1f} at the end; all variants "
             f"timed interleaved in one process ({args.rounds} rounds x {args.per_round} calls).", "",
             "    nice python benchmarks/minilm_graph_variants.py", "",
             "| graph | SkipLayerNormFusion | p50 ms | vs sdpa FP32 (fusion on) |", "|---|---|---|---|"]
    for key, stats in timing.stats.items():
        name, sln = key.split("|")
        p50 = stats.p50
        lines.append(f"| {name} | {sln} | {p50:.2f} | {base / p50:.2f}x |")
    RESULT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
