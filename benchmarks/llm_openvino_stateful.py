"""OpenVINO decode speed of compressor's KV-cache decoder IR, as compressor drives it
(cache tensors in and out every step) and made stateful (``make_stateful``: the cache
stays inside the infer request, as optimum-intel's exports do), FP32 and INT4 interleaved.

    python benchmarks/llm_openvino_stateful.py RUN_DIR   # RUN_DIR of `compressor run recipes/smollm2.yaml`
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path


def stateless(xml: Path, threads: int, layers: int):
    from compressor.bench.llm import Decoder
    from compressor.targets.openvino_cpu import OpenVinoSession

    dec = Decoder(OpenVinoSession(xml, threads=threads, precision_hint="f32"), (3, 64, layers))

    def run(prompt: np.ndarray, steps: int) -> list[float]:
        logits, past = dec(prompt, dec.empty())
        times = []
        for _ in range(steps):
            nxt = np.array([int(logits[0, -1].argmax())])
            t0 = time.perf_counter()
            logits, past = dec(nxt, past)
            times.append(time.perf_counter() - t0)
        return times
    return run


def stateful(xml: Path, threads: int, layers: int):
    import openvino as ov
    from openvino._offline_transformations import apply_make_stateful_transformation

    core = ov.Core()
    model = core.read_model(str(xml))
    apply_make_stateful_transformation(model, {f"past_{kv}_{i}": f"present_{kv}_{i}"
                                               for i in range(layers) for kv in ("key", "value")})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    out0 = compiled.output(0)

    def run(prompt: np.ndarray, steps: int) -> list[float]:
        req.reset_state()
        logits = req.infer({"input_ids": prompt[None]})[out0]
        times = []
        for _ in range(steps):
            nxt = np.array([[int(logits[0, -1].argmax())]], np.int64)
            t0 = time.perf_counter()
            logits = req.infer({"input_ids": nxt})[out0]
            times.append(time.perf_counter() - t0)
        return times
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/llm_openvino_stateful.json")
    args = ap.parse_args()
    from compressor.bench.environment import describe_environment

    folder = args.run_dir / "artifacts" / "openvino-cpu"
    layers = 30
    runners = {f"{v}-{mode}": fn(folder / f"{v}.xml", args.threads, layers)
               for v in ("baseline", "compressed") for mode, fn in (("stateless", stateless), ("stateful", stateful))}
    prompt = np.arange(100, 228, dtype=np.int64)
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds + 1):  # interleaved rounds; the first warms up
        for k, run in runners.items():
            t = run(prompt, 32)
            if r:
                times[k] += t
    tok_s = {k: 1.0 / float(np.mean(v)) for k, v in times.items()}
    res = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "command": f"python benchmarks/llm_openvino_stateful.py RUN_DIR --rounds {args.rounds}",
           "environment": describe_environment(args.threads), "decode_tokens_per_s": tok_s,
           "int4_speedup": {m: tok_s[f"compressed-{m}"] / tok_s[f"baseline-{m}"] for m in ("stateless", "stateful")}}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["decode_tokens_per_s"], indent=1), res["int4_speedup"])


if __name__ == "__main__":
    main()
