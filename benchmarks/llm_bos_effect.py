"""What starting each window with BOS is worth: perplexity of one exported decoder with and
without BOS on the same text windows (ONNX Runtime, FP32). Gemma models are trained with
BOS at position 0; compressor's ``bos: auto`` follows the tokenizer's configuration.

    python benchmarks/llm_bos_effect.py RUN_DIR MODEL_FOLDER   # after `compressor run recipes/gemma3.yaml --out RUN_DIR`
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout (and examples/) on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--text", type=Path, default=ROOT / "examples/data/canterbury/lcet10.txt")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from transformers import AutoConfig, AutoTokenizer

    from compressor.bench.llm import Decoder, perplexity
    from compressor.data.text import split_text
    from compressor.export.decoder import cache_layout
    from compressor.recipe.schema import TextEvalSpec
    from compressor.targets.onnxruntime_cpu import OrtSession

    spec = TextEvalSpec(max_tokens=args.max_tokens, window=512, stride=256)
    text = split_text(AutoTokenizer.from_pretrained(args.model), args.text, spec)
    dec = Decoder(OrtSession(args.run_dir / "artifacts/baseline.onnx", args.threads, {}),
                  cache_layout(AutoConfig.from_pretrained(args.model)))
    res = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/llm_bos_effect.py " + " ".join(sys.argv[1:]),
           "load_average": os.getloadavg(), "model": str(args.model), "tokenization": text.tokenization,
           "text": f"{args.text.name}, first {len(text.evaluation)} tokens, window 512, stride 256"}
    for name, bos in (("with_bos", text.bos), ("without_bos", None)):
        ppl, n = perplexity(dec, text.evaluation, spec.window, spec.stride, bos)
        res[name] = {"perplexity": ppl, "tokens": n}
        print(name, round(ppl, 3), n, flush=True)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
