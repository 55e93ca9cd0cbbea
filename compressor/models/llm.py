"""Decoder LLMs (any decoder-only ``*ForCausalLM`` transformers runs: Llama, Qwen2/Qwen3,
Gemma-3, Phi-3, Mistral, SmolLM3, ...) from a Hugging Face folder or a GGUF file, offline.

Safety: a folder must hold ``*.safetensors`` weights (``pytorch_model.bin`` would be
unpickled and is refused), ``trust_remote_code`` is never set, and nothing is fetched
(``HF_HUB_OFFLINE=1``, ``local_files_only``). A GGUF file is dequantized to FP32 by
transformers' reader (PyPI ``gguf``); its weights are then the dequantized values of the
file's own quantization grid (e.g. Q4_1), which every report built on it must say.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import ModelLoadError



@dataclass
class LlmModel:
    """A loaded decoder: the torch model (eval, FP32), its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    source: str  # "hf" or "gguf"
    path: Path
    note: str = ""  # e.g. "FP32 dequantized from Q4_1"

    @property
    def config(self) -> Any:
        return self.model.config


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_arch(config: Any, where: Path) -> None:
    """Refuse, in one line, a model transformers has no causal-LM class for (an encoder, a
    seq2seq model): the decoder export runs the library's own forward, so that is the rule."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", None)
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ModelLoadError(f"{where}: model type {kind!r} is not a decoder-only causal LM that transformers "
                             "can run, so it cannot be exported as a KV-cache decoder",
                             hint="decoder LLMs: any model type transformers loads with AutoModelForCausalLM")


def load_hf_folder(folder: Path) -> LlmModel:
    """A Hugging Face model folder with config.json, safetensors weights and a tokenizer."""
    _offline()
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a Hugging Face model folder")
    if not list(folder.glob("*.safetensors")):
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        raise ModelLoadError(f"{folder} has no .safetensors weights" + (f" (found {pickled[0]}, which would be "
                             "unpickled: refused)" if pickled else ""),
                             hint="convert the weights to safetensors in a trusted environment")
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        _check_arch(config, folder)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, trust_remote_code=False,
                                                     use_safetensors=True, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except ModelLoadError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelLoadError(f"cannot load the model in {folder}: {_first_line(e)}") from None
    # a folder written by save_hf_folder from a GGUF says where its FP32 weights came from
    source = folder / "SOURCE.txt"
    note = source.read_text(encoding="utf-8").strip() if source.is_file() else ""
    return LlmModel(model.eval(), tokenizer, "hf", folder, note=note)


def load_gguf(path: Path) -> LlmModel:
    """A GGUF file, dequantized to FP32 (tokenizer and config come from the file)."""
    _offline()
    if not path.is_file():
        raise ModelLoadError(f"GGUF file {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file (bad magic bytes)")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = path.parent, path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True)
        _check_arch(config, path)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    except ModelLoadError:
        raise
    except ImportError as e:
        raise ModelLoadError(f"reading GGUF needs the packages gguf and accelerate ({_first_line(e)})",
                             hint="pip install gguf accelerate") from None
    except Exception as e:  # noqa: BLE001 - the gguf reader raises many types on a truncated file
        raise ModelLoadError(f"cannot read GGUF file {path}: {_first_line(e)}") from None
    # a plain FP32 model: drop the GGUF quantization record so it saves and exports as usual
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    gtype, flags = _gguf_metadata(path)
    _apply_special_token_flags(tokenizer, flags)
    return LlmModel(model.eval(), tokenizer, "gguf", path, note=f"FP32 dequantized from GGUF {gtype}")


def _gguf_metadata(path: Path) -> tuple[str, dict[str, bool]]:
    """The file's main quantization type (e.g. Q4_1, for the report's note) and its
    tokenizer's ``add_bos_token`` / ``add_eos_token`` flags, which transformers' GGUF reader
    does not carry over (a Gemma GGUF would lose its BOS)."""
    try:
        from gguf import GGUFReader, LlamaFileType

        fields = GGUFReader(str(path)).fields
    except Exception:  # noqa: BLE001 - labels and flags only; the weights were read above
        return "?", {}

    def scalar(key: str) -> Any:
        f = fields.get(key)
        return f.parts[f.data[0]][0] if f is not None and f.data else None

    ftype = scalar("general.file_type")
    gtype = LlamaFileType(int(ftype)).name.replace("MOSTLY_", "") if ftype is not None else "?"
    flags = {name: bool(v) for name, key in (("add_bos_token", "tokenizer.ggml.add_bos_token"),
                                             ("add_eos_token", "tokenizer.ggml.add_eos_token"))
             if (v := scalar(key)) is not None}
    return gtype, flags


def _apply_special_token_flags(tokenizer: Any, flags: dict[str, bool]) -> None:
    """Set the tokenizer's BOS/EOS behaviour from the GGUF file (saved with the tokenizer)."""
    for name, value in flags.items():
        if hasattr(type(tokenizer), name):
            setattr(tokenizer, name, value)


def load_llm(spec: Any) -> LlmModel:
    """The recipe's ``model: {hf: folder}`` or ``model: {gguf: file}`` (paths as anchored by the run)."""
    if spec.hf is not None:
        return load_hf_folder(Path(spec.hf))
    return load_gguf(Path(spec.gguf))


def save_hf_folder(llm: LlmModel, folder: Path) -> Path:
    """Write ``llm`` as an ordinary FP32 safetensors folder (what ``make llm`` caches)."""
    folder.mkdir(parents=True, exist_ok=True)
    llm.model.save_pretrained(folder, safe_serialization=True)
    llm.tokenizer.save_pretrained(folder)
    if llm.note:
        (folder / "SOURCE.txt").write_text(f"{llm.note}: {llm.path.name}\n", encoding="utf-8")
    return folder


def hf_folder_from_gguf(src: Path, cache_name: str, out_dir: Path) -> Path:
    """``src`` (a GGUF file) dequantized to an FP32 Hugging Face folder at ``out_dir``: converted
    once into ``<cache>/llm/<cache_name>`` (complete folders only: written under ``.partial``
    and renamed), then copied, replacing whatever ``out_dir`` was.

        >>> hf_folder_from_gguf(Path("m.Q4_1.gguf"), "m-123", Path("weights/m"))   # doctest: +SKIP
    """
    import shutil

    from compressor.utils.io import cache_dir

    cached = cache_dir() / "llm" / cache_name
    if not (cached / "config.json").exists():
        tmp = cached.with_name(cached.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        save_hf_folder(load_gguf(src), tmp)
        tmp.replace(cached)
    if out_dir.is_symlink() or out_dir.is_file():
        out_dir.unlink()
    elif out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cached, out_dir)
    return out_dir
