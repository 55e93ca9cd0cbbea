"""ONNX Runtime settings that compressor's own sessions change, and why: graph optimizers turned
off (:data:`KEEP_FLOAT_NODES`) and worker threads that do not spin (:func:`no_spinning`).

``WeightBiasQuantization`` (ONNX Runtime >= 1.20, on by default) gives every Conv, ConvTranspose
or Gemm that reads a DequantizeLinear output but has a float weight a **per-tensor symmetric
INT8** weight when the session starts. In a QDQ model that is exactly a node the quantizer left in
FP32 on purpose (``nodes_to_exclude``, or the accuracy-aware tuner's FP32 fallback) next to
quantized ones: ORT silently re-quantizes it, per tensor. On MobileNetV2 after cross-layer
equalization (a depthwise layer's channel ranges 0.004 to 2.5) "keeping" the first depthwise
conv FP32 that way cut top-1 agreement from 84% to 72%. With the optimizer off, an FP32 node
runs in FP32, as the recipe and the tuner asked. A deployment that runs the model in its own ORT
session must turn it off too (``disabled_optimizers=["WeightBiasQuantization"]``).
"""

from __future__ import annotations

KEEP_FLOAT_NODES: tuple[str, ...] = ("WeightBiasQuantization",)


def no_spinning(so: object) -> object:
    """Turn off ONNX Runtime's spinning intra-op worker threads on the SessionOptions ``so``.

    By default ORT's worker threads spin after each call, waiting for the next one. That speeds
    up back-to-back calls of one session on an idle machine, but a spinning pool keeps the cores
    busy for every other session of the process: when compressor times several models in
    alternating rounds (paired speedups, the measured INT8 format choice, the tuner's per-trial
    latency) the previous model's threads compete with the next one's. Measured on a 2-core VM
    (Intel Xeon family 6 model 207, 2026-12-06; MobileNetV2 FP32 against an INT8 version, 2
    threads, 20 rounds x 10 calls, three repeats): spinning sessions interleaved gave FP32 5.8-7.1
    ms and speedups of 1.79-2.10x; non-spinning ones 3.9 ms and 1.56-1.57x, against 1.57-1.62x for
    each model timed on its own. A lone non-spinning session is about 5% slower than a spinning one
    (3.8 vs 3.6 ms); the target option ``spinning: true`` restores ORT's default."""
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # type: ignore[attr-defined]
    return so
