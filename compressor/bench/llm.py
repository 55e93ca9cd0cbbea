"""Decoder-LLM measurements over any session that runs the exported KV-cache decoder
(``compressor.export.decoder``: ``input_ids`` + ``past_*`` in, ``logits`` + ``present_*``
out): perplexity, greedy next-token agreement with FP32, prefill latency, decode speed,
peak memory. numpy only (no torch), like the rest of bench/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.bench.latency import LatencyStats

Progress = Callable[[str, int, int], None]


class Decoder:
    """Drives a loaded session of the exported decoder token by token (batch 1)."""

    def __init__(self, session: Any, cache_shape: tuple[int, int, int]):
        self.session = session
        self.past_names = [n for n in session.input_names if n.startswith("past_")]
        self.kv_heads, self.head_dim, _ = cache_shape[0], cache_shape[1], cache_shape[2]

    def empty(self) -> list[np.ndarray]:
        return [np.zeros((1, self.kv_heads, 0, self.head_dim), np.float32) for _ in self.past_names]

    def __call__(self, ids: np.ndarray, past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        feeds = {"input_ids": np.ascontiguousarray(ids.reshape(1, -1), dtype=np.int64), **dict(zip(self.past_names, past))}
        out = self.session.run(feeds)
        return out[0], list(out[1:])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def perplexity(dec: Decoder, tokens: np.ndarray, window: int, stride: int, bos: int | None = None,
               progress: Progress | None = None) -> tuple[float, int]:
    """Sliding-window perplexity: windows of ``window`` tokens every ``stride`` tokens;
    each token is scored once, with up to ``window - stride`` tokens of context before it
    (the first window scores all but its first token). With ``bos`` every window starts
    with that token (models trained with one). Returns (perplexity, tokens scored)."""
    nll, count, done = 0.0, 0, 0  # tokens[:done] are scored (token 0 has no context without bos)
    off = 1 if bos is not None else 0
    starts = list(range(0, max(1, len(tokens) - 1), stride))
    for k, s in enumerate(starts):
        end = min(s + window - off, len(tokens))
        ids = np.concatenate([[bos], tokens[s:end]]) if bos is not None else tokens[s:end]
        logits, _ = dec(np.asarray(ids), dec.empty())
        lo = max(done, s + 1 - off)
        # token at position a is ids[a - s + off], predicted by logits[a - s + off - 1]
        logp = log_softmax(logits[0, lo - s + off - 1:end - s + off - 1])
        nll -= float(logp[np.arange(end - lo), tokens[lo:end]].sum())
        count += end - lo
        done = end
        if progress:
            progress("perplexity", k + 1, len(starts))
        if end >= len(tokens):
            break
    return float(np.exp(nll / max(count, 1))), count


def greedy(dec: Decoder, prompt: np.ndarray, new_tokens: int) -> np.ndarray:
    """Greedy continuation of ``prompt`` with the KV cache (``new_tokens`` ids)."""
    logits, past = dec(prompt, dec.empty())
    out = []
    for _ in range(new_tokens):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits, past = dec(np.array([nxt]), past)
    return np.array(out, dtype=np.int64)


def agreement(dec: Decoder, prompts: list[np.ndarray], continuations: list[np.ndarray]) -> float:
    """Fraction of positions where this model's greedy next token equals FP32's, with the
    FP32 greedy continuation as the prefix (teacher-forced, one pass per prompt)."""
    same = total = 0
    for p, c in zip(prompts, continuations):
        logits, _ = dec(np.concatenate([p, c]), dec.empty())
        pred = logits[0, len(p) - 1:len(p) - 1 + len(c)].argmax(-1)
        same += int((pred == c).sum())
        total += len(c)
    return same / max(total, 1)


def prefill_latency(dec: Decoder, prompt: np.ndarray, runs: int) -> LatencyStats:
    dec(prompt, dec.empty())  # warm-up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        dec(prompt, dec.empty())
        samples.append((time.perf_counter() - t0) * 1000.0)
    return LatencyStats.from_samples_ms(np.asarray(samples))


def decode_latency(dec: Decoder, prompt: np.ndarray, new_tokens: int, runs: int) -> LatencyStats:
    """Per-token latency of greedy decoding after a ``prompt`` prefill (batch 1)."""
    samples: list[float] = []
    for r in range(runs + 1):  # the first run warms up
        logits, past = dec(prompt, dec.empty())
        for _ in range(new_tokens):
            nxt = np.array([int(logits[0, -1].argmax())])
            t0 = time.perf_counter()
            logits, past = dec(nxt, past)
            if r:
                samples.append((time.perf_counter() - t0) * 1000.0)
    return LatencyStats.from_samples_ms(np.asarray(samples))


def peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5), so the peak measured
    after it is the benchmark's own, not the compile's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
