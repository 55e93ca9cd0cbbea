"""What the benchmark scripts share. Each script starts with ``import _common`` (a script's
own folder is on ``sys.path``), which puts this checkout and its ``examples/`` first on the
path, once, for all of them: ``python benchmarks/NAME.py`` then measures the checkout's
compressor even where another copy is installed, and imports the example models by name.

Also the ONNX Runtime helpers several scripts time and score with.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "examples", ROOT):   # ROOT ends up first
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

THREADS = 2
NOISE_STD = 1.0 / 255.0  # one grey level, in [0, 1] pixel units (before normalisation)


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module of its own (``example_<name>``)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ort_session(path: Path) -> Any:
    """A plain ONNX Runtime CPU session on THREADS threads whose worker threads do not spin (as
    compressor's own: the scripts time several sessions interleaved; compressor/utils/ort_sessions.py)."""
    import onnxruntime as ort

    from compressor.utils.ort_sessions import no_spinning

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    no_spinning(so)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_all(session: Any, x: np.ndarray, batch: int = 20) -> np.ndarray:
    """First output over ``x``; ``session`` is an ORT session or a compressor target session."""
    def one(feeds):
        return session.run(None, feeds)[0] if hasattr(session, "get_inputs") else session.run(feeds)[0]

    return np.concatenate([one({"input": x[i:i + batch]}) for i in range(0, len(x), batch)])


def interleaved_p50(runs: dict[str, object], rounds: int = 5, iterations: int = 20) -> dict[str, float]:
    """Each callable's p50 (ms) over ``rounds`` interleaved rounds of ``iterations`` calls
    (the product's paired timing, compressor.bench.latency.measure_interleaved)."""
    from compressor.bench.latency import measure_interleaved

    timing = measure_interleaved(runs, rounds=rounds, per_round=iterations, warmup=5)  # type: ignore[arg-type]
    return {k: s.p50 for k, s in timing.stats.items()}


def int8_on_both(path: Path, x: np.ndarray, ov: Any, out: Path, tag: str) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """The INT8 ONNX model at ``path`` on ONNX Runtime and on compressor's OpenVINO target ``ov``
    (compiled into ``out`` as ``tag``): (ORT session, its outputs on ``x``, OpenVINO session, its outputs)."""
    from compressor.targets.base import ModelArtifact

    s = ort_session(path)
    s_ov = ov.load(ov.compile(ModelArtifact(tag, "int8", path, []), out, precision="int8"), threads=THREADS)
    return s, run_all(s, x), s_ov, run_all(s_ov, x)


def stable_crops(fp32_session: Any, x: np.ndarray, ref: np.ndarray, draws: int = 3,
                 std: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Crops whose FP32 top-1 survives ``draws`` draws of one-grey-level input noise; also
    returns how often FP32 agrees with itself under that noise (the noise floor). ``std``: the
    per-channel divisor of the model's input normalisation (default ImageNet's)."""
    from mobilenet_v2 import IMAGENET_STD

    std = IMAGENET_STD if std is None else np.asarray(std, np.float32)
    rng = np.random.default_rng(0)
    same = np.ones(len(x), bool)
    floor = []
    for _ in range(draws):
        noise = rng.normal(0.0, NOISE_STD, x.shape).astype(np.float32) / std[None, :, None, None]
        top = run_all(fp32_session, (x + noise).astype(np.float32)).argmax(1)
        floor.append(float(np.mean(top == ref.argmax(1))))
        same &= top == ref.argmax(1)
    return same, float(np.mean(floor))


def kl(ref: np.ndarray, out: np.ndarray) -> float:
    """Mean KL divergence of the INT8 softmax from the FP32 softmax: a finer signal than top-1 agreement."""
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = log_softmax(ref), log_softmax(out)
    return float(np.mean(np.sum(np.exp(lp) * (lp - lq), 1)))


def lscpu_summary() -> str:
    """'<model name> (family F model M; <SIMD flags>)' from lscpu: the CPU line every result records."""
    import subprocess

    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in info.get("Flags", "")]
    return (f"{info.get('Model name', '?').strip()} (family {info.get('CPU family', '?').strip()} model "
            f"{info.get('Model', '?').strip()}; {', '.join(flags)})")


def llm_cache_shape(folder: Path) -> tuple[int, int, int]:
    """(KV heads, head dim, layers) of a Hugging Face decoder folder, as the pipeline derives them."""
    import json

    c = json.loads((folder / "config.json").read_text())
    c = c.get("text_config", c)
    return (c["num_key_value_heads"], c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
            c["num_hidden_layers"])


def llm_session(path: Path, threads: int) -> Any:
    """A compressor target session on an exported decoder: ONNX Runtime for .onnx, OpenVINO
    (f32 precision hint) for .xml."""
    from compressor.targets.onnxruntime_cpu import OrtSession
    from compressor.targets.openvino_cpu import OpenVinoSession

    if Path(path).suffix == ".xml":
        return OpenVinoSession(Path(path), threads=threads, precision_hint="f32")
    return OrtSession(Path(path), threads, {})


# the decoder LLMs the LLM benchmarks measure, and the text their recipes score perplexity on
LLM_MODELS = {"smollm2": ROOT / "examples/weights/smollm2-135m-instruct", "gemma3": ROOT / "examples/weights/gemma3-270m"}
LLM_TEXT = ROOT / "examples/data/canterbury/lcet10.txt"


def llm_text_spec() -> Any:
    """The recipes' ``data.text`` (recipes/smollm2.yaml, gemma3.yaml)."""
    from compressor.recipe.schema import TextEvalSpec

    return TextEvalSpec(max_tokens=2048, window=512, stride=256, prompts=8, prompt_tokens=32, continuation_tokens=16)


def run_child(script: str, out: Path, threads: int, name: str, mode: str) -> dict:
    """``script --measure name mode`` in a fresh process: its last stdout line as JSON."""
    cmd = [sys.executable, script, "--out", str(out), "--threads", str(threads), "--measure", name, mode]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def serve_child(out: Path, measure_arg: list[str] | None, threads: int, measure: Any) -> bool:
    """The child side of :func:`run_child`: with ``--measure NAME MODE``, measure variant NAME
    of ``out/built.json`` on ``out/data.json`` and print the result as one JSON line (True);
    without it, nothing (False)."""
    if not measure_arg:
        return False
    entry = json.loads((out / "built.json").read_text())[measure_arg[0]]
    data = json.loads((out / "data.json").read_text())
    print(json.dumps(measure(entry, data, threads, measure_arg[1] == "decode")))
    return True
