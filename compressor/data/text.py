"""Plain text for decoder LLMs (``data.source: {text: file}``): token ids for perplexity,
fixed prompts for greedy agreement, and held-out windows for calibration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import DataError


@dataclass
class TextSplits:
    """Token ids (int64) cut from one text."""

    evaluation: np.ndarray  # perplexity tokens (the first ``max_tokens``)
    prompts: list[np.ndarray]  # agreement prompts, at fixed offsets inside ``evaluation``
    calibration: list[np.ndarray]  # windows from after ``evaluation`` (never scored)
    bos: int | None  # token every perplexity window starts with, or None
    source: str


def read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"text file {path} does not exist",
                        hint="run `make llm` for the Canterbury texts, or point data.source.text at a UTF-8 file")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")  # the Canterbury texts are 8-bit; every byte maps
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not text.strip():
        raise DataError(f"text file {path} is empty")
    return text


def _bos(tokenizer: Any, mode: str) -> int | None:
    bos = getattr(tokenizer, "bos_token_id", None)
    if mode == "never" or bos is None:
        return None
    if mode == "always":
        return int(bos)
    probe = tokenizer("a").input_ids  # auto: only where the tokenizer itself adds BOS
    return int(bos) if probe and probe[0] == bos else None


def split_text(tokenizer: Any, path: Path, spec: Any) -> TextSplits:
    """Tokenize ``path`` and cut it per ``data.text`` (:class:`TextEvalSpec`)."""
    text = read_text(path)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < spec.window:
        raise DataError(f"{path.name} has {len(ids)} tokens, fewer than one window ({spec.window})")
    evaluation = ids[:spec.max_tokens]
    need = spec.prompt_tokens + spec.continuation_tokens
    if len(evaluation) < need:
        raise DataError(f"{path.name}: {len(evaluation)} evaluated tokens cannot hold a {need}-token prompt")
    offsets = np.linspace(0, len(evaluation) - need, spec.prompts).astype(int)
    prompts = [evaluation[o:o + spec.prompt_tokens] for o in offsets]
    rest = ids[len(evaluation):]
    n = spec.calibration_tokens
    calibration = [rest[i * n:(i + 1) * n] for i in range(min(spec.calibration_samples, len(rest) // n))]
    return TextSplits(evaluation, prompts, calibration, _bos(tokenizer, spec.bos), path.name)
