"""Plain text for decoder LLMs (``data.source: {text: file}``): token ids for perplexity,
fixed prompts for greedy agreement, and held-out windows for calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    tokenization: dict[str, Any] = field(default_factory=dict)  # what the report's llm section records


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


def _bos(tokenizer: Any, mode: str) -> tuple[int | None, str]:
    """The token each perplexity window starts with, and why. ``auto`` follows the
    tokenizer's own configuration (``add_bos_token``, from tokenizer_config.json or the GGUF
    file's ``tokenizer.ggml.add_bos_token``): Gemma scores more than twice as badly without
    its BOS, SmolLM2's tokenizer adds none."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None, "the tokenizer has no BOS token"
    if mode == "never":
        return None, "data.text.bos: never"
    if mode == "always":
        return int(bos), "data.text.bos: always"
    probe = tokenizer("a").input_ids  # what the configured post-processor really does
    if probe and probe[0] == bos:
        return int(bos), "the tokenizer adds BOS (its add_bos_token)"
    return None, "the tokenizer adds no BOS (its add_bos_token)"


def _token(tokenizer: Any, token_id: int | None) -> str | None:
    return None if token_id is None else str(tokenizer.convert_ids_to_tokens(int(token_id)))


def _chat_prompts(tokenizer: Any, prompts: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Each prompt's text as one user turn of the tokenizer's chat template, ready for the
    assistant's reply (only when the recipe asks: ``data.text.chat_template: true``)."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"data.text.chat_template is set but the tokenizer of this model has no chat template "
                        f"(evaluating {path.name})", hint="set chat_template: false for a base model")
    out = []
    for p in prompts:
        turn = [{"role": "user", "content": tokenizer.decode(p)}]
        ids = tokenizer.apply_chat_template(turn, add_generation_prompt=True, tokenize=True, return_dict=False)
        out.append(np.asarray(ids["input_ids"] if isinstance(ids, dict) else ids, dtype=np.int64).reshape(-1))
    return out


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
    bos, why = _bos(tokenizer, spec.bos)
    if spec.chat_template:
        prompts = _chat_prompts(tokenizer, prompts, path)  # the template places BOS itself
    elif bos is not None:  # a prompt is the start of a sequence, like a window
        prompts = [np.concatenate([[bos], p]).astype(np.int64) for p in prompts]
    eos = getattr(tokenizer, "eos_token_id", None)
    # EOS is recorded, never appended: windows are cut from the middle of a document, and
    # greedy continuations run a fixed length so that every variant is compared on the same count
    tokenization = {"bos_token": _token(tokenizer, bos), "bos_source": why,
                    "eos_token": _token(tokenizer, eos), "chat_template": bool(spec.chat_template)}
    return TextSplits(evaluation, prompts, calibration, bos, path.name, tokenization)
