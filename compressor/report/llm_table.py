"""The decoder-LLM table of report.md / report.html: perplexity, agreement, prefill,
decode speed, memory and size per (variant, target)."""

from __future__ import annotations

from compressor.report.gates import baseline_of
from compressor.report.model import Report

LLM_COLUMNS = ["variant", "target", "precision", "perplexity", "ppl_increase", "agreement", "prefill_ms",
               "decode_tok_s", "decode_speedup", "peak_rss", "size", "size_vs_fp32"]
LLM_NOTE = ("Perplexity: sliding windows over the recipe's text (increase against FP32 on the same target); "
            "agreement: greedy next-token agreement with FP32 on FP32's own greedy continuations; prefill_ms: "
            "p50 of one prompt with an empty KV cache; decode: batch-1 greedy tokens/s with the KV cache; "
            "peak_rss: the measuring process after loading the model.")


def has_llm(report: Report) -> bool:
    return any(r.llm is not None for r in report.results)


def llm_rows(report: Report) -> list[dict[str, str]]:
    from compressor.report.units import fmt_size

    rows = []
    for r in report.results:
        if r.llm is None:
            continue
        m = r.llm
        base = report.result(baseline_of(r.variant), r.target, r.host)
        b = base.llm if base is not None and base is not r else None
        rows.append({
            "variant": r.variant, "target": r.target, "precision": r.precision,
            "perplexity": f"{m.perplexity:.3f}",
            "ppl_increase": f"{(m.perplexity / b.perplexity - 1) * 100:+.2f}%" if b else "-",
            "agreement": f"{m.next_token_agreement:.3f}" if m.next_token_agreement is not None else "-",
            "prefill_ms": f"{m.prefill_ms.p50:.1f}" if m.prefill_ms else "-",
            "decode_tok_s": f"{m.decode_tokens_per_s:.2f}" if m.decode_tokens_per_s else "-",
            "decode_speedup": (f"{m.decode_tokens_per_s / b.decode_tokens_per_s:.2f}x"
                               if b and m.decode_tokens_per_s and b.decode_tokens_per_s else "-"),
            "peak_rss": fmt_size(m.peak_rss_bytes),
            "size": fmt_size(r.size_bytes),
            "size_vs_fp32": (f"{r.size_bytes / base.size_bytes * 100:.1f}%"
                             if base is not None and base is not r and base.size_bytes and r.size_bytes else "-"),
        })
    return rows


def llm_notes(report: Report) -> list[str]:
    """Where the FP32 weights came from (e.g. dequantized from GGUF Q4_1), once per note."""
    return sorted({r.llm.note for r in report.results if r.llm is not None and r.llm.note})
