"""One decoder-LLM (variant, target) measurement as plain data, run in a child process by
:func:`compressor.bench.isolated.run_isolated` (its ``execute`` is the child's work)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor.bench import llm
from compressor.targets.base import ModelArtifact
from compressor.targets.registry import import_target_class
from compressor.targets.spec import TargetSpec


@dataclass
class LlmJob:
    runtime: str  # "module:Class" of the Target subclass
    spec: TargetSpec
    variant: str
    precision: str
    out_dir: Path
    run_dir: Path
    model: ModelArtifact
    threads: int
    cache_shape: tuple[int, int, int]  # kv heads, head dim, layers
    tokens: np.ndarray  # perplexity text
    window: int
    stride: int
    bos: int | None
    prompts: list[np.ndarray]
    continuations: list[np.ndarray]  # the FP32 greedy continuation of each prompt
    timing: dict[str, int]  # prefill_tokens, prefill_runs, decode_tokens, decode_runs
    meta: dict[str, Any] = field(default_factory=dict)

    def execute(self, progress: Any = None) -> dict[str, Any]:
        """Compile, load, measure; returns the result row's measured fields."""
        target = import_target_class(self.runtime)(self.spec)
        artifact = target.compile(self.model, self.out_dir, precision=self.precision)
        llm.peak_rss_reset()  # the peak below is loading + running, not converting
        session = target.load(artifact, threads=self.threads)
        dec = llm.Decoder(session, self.cache_shape)
        t = self.timing
        ppl, scored = llm.perplexity(dec, self.tokens, self.window, self.stride, self.bos, progress)
        agree = llm.agreement(dec, self.prompts, self.continuations)
        prompt = np.resize(self.tokens, t["prefill_tokens"])  # a real-text prompt of the exact length
        if progress:
            progress("prefill", 0, 1)
        prefill = llm.prefill_latency(dec, prompt, t["prefill_runs"])
        if progress:
            progress("decode", 0, 1)
        decode = llm.decode_latency(dec, prompt, t["decode_tokens"], t["decode_runs"])
        tok_s = 1000.0 / decode.mean
        return {
            "precision": target.precision_for(self.precision),
            "accuracy": {"metric": "perplexity", "value": ppl, "higher_is_better": False, "samples": scored},
            "latency_ms": decode.to_dict(),
            "throughput_per_s": tok_s,
            "size_bytes": artifact.size_bytes,
            "device": target.describe(),
            "artifact": str(artifact.path.relative_to(self.run_dir)),
            "llm": {"perplexity": ppl, "perplexity_tokens": scored, "window": self.window, "stride": self.stride,
                    "bos": self.bos is not None, "next_token_agreement": agree,
                    "agreement_tokens": int(sum(len(c) for c in self.continuations)),
                    "prefill_tokens": t["prefill_tokens"], "prefill_ms": prefill.to_dict(),
                    "decode_tokens_per_s": tok_s, "decode_tokens": t["decode_tokens"] * t["decode_runs"],
                    "peak_rss_bytes": llm.peak_rss_bytes(), **self.meta},
        }
