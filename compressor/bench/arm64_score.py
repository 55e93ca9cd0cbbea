"""Score an ONNX/ORT model with ONNX Runtime on the data of an .npz file: the arm64 side.

This file runs **as a script** under ``qemu-aarch64`` with Debian's arm64 python3.11 and
the aarch64 ``onnxruntime``/``numpy`` wheels (:mod:`compressor.bench.arm64_env`), so it
imports nothing but the standard library, numpy and onnxruntime (the compressor package
needs pydantic, click, ... that the arm64 environment does not have). It works on any
machine with numpy + onnxruntime, e.g. on the phone or board itself.

The .npz is compressor's data format: one array per model input (by input name, or ``x``
for a single input) and optionally ``y`` (class ids), plus ``reference`` (reference
outputs, e.g. FP32 logits) if any. It writes every
output of the model (``--outputs``, an .npz: the host computes any metric from them)
and a JSON summary: top-1 accuracy against the labels, top-1 agreement with the
reference, samples, seconds and the runtime's version and CPU architecture.

    python3.11 arm64_score.py model.ort data.npz --outputs out.npz --json score.json \\
        --settings '{"threads": 1, "disabled_optimizers": ["WeightBiasQuantization"]}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

LABELS, REFERENCE = "y", "reference"
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


def make_session(model: str, settings: dict):
    """An ONNX Runtime CPU session with the host target's settings (threads, optimizers)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(settings.get("threads", 1))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    level = settings.get("graph_optimization_level", "all")
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
    if is_ort_format(model):
        so.add_session_config_entry("session.load_model_format", "ORT")
    for key, value in (settings.get("config") or {}).items():
        so.add_session_config_entry(key, str(value))
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(settings.get("disabled_optimizers") or []) or None)


def is_ort_format(model: str) -> bool:
    """Whether ``model`` is an ORT-format flatbuffer (file identifier ``ORTM``), whatever its name."""
    with open(model, "rb") as f:
        return f.read(8)[4:8] == b"ORTM"


def run_all(session, inputs: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
    """Every output over all samples, in batches of ``batch``, concatenated per output."""
    names = [i.name for i in session.get_inputs()]
    if len(names) == 1 and names[0] not in inputs and len(inputs) == 1:
        inputs = {names[0]: next(iter(inputs.values()))}
    missing = [n for n in names if n not in inputs]
    if missing:
        raise SystemExit(f"error: model inputs {missing} are not in the data (it has {sorted(inputs)})")
    n = len(next(iter(inputs.values())))
    chunks = [session.run(None, {k: inputs[k][i:i + batch] for k in names}) for i in range(0, n, batch)]
    return [np.concatenate([c[j] for c in chunks]) for j in range(len(chunks[0]))]


def top1(logits: np.ndarray, target: np.ndarray) -> float:
    """Share of samples whose arg-max matches ``target`` (class ids, or logits to arg-max)."""
    pred = logits.reshape(len(logits), -1).argmax(axis=1)
    want = target.reshape(len(target), -1).argmax(axis=1) if target.ndim > 1 else target.reshape(-1)
    return float(np.mean(pred == want))


def score(model: str, data: str, settings: dict, batch: int) -> tuple[dict, list[np.ndarray]]:
    """``(summary, outputs)`` of ``model`` on the arrays of ``data``."""
    import onnxruntime as ort

    with np.load(data, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    labels, reference = arrays.pop(LABELS, None), arrays.pop(REFERENCE, None)
    start = time.perf_counter()
    outputs = run_all(make_session(model, settings), arrays, batch)
    summary = {"samples": int(len(outputs[0])), "seconds": round(time.perf_counter() - start, 3),
               "onnxruntime": ort.__version__, "machine": platform.machine(), "python": platform.python_version(),
               "top1": None if labels is None else top1(outputs[0], labels),
               "top1_agreement": None if reference is None else top1(outputs[0], reference)}
    return summary, outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--outputs", help="write the model's outputs here (.npz: out0, out1, ...)")
    p.add_argument("--json", help="write the summary here (default: stdout)")
    p.add_argument("--settings", default="{}", help="session settings as JSON")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    summary, outputs = score(args.model, args.data, json.loads(args.settings), max(1, args.batch))
    if args.outputs:
        tmp = args.outputs + ".part.npz"
        np.savez(tmp, **{f"out{i}": o for i, o in enumerate(outputs)})
        os.replace(tmp, args.outputs)
    text = json.dumps(summary, indent=2)
    if args.json:
        with open(args.json + ".part", "w") as f:
            f.write(text)
        os.replace(args.json + ".part", args.json)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
