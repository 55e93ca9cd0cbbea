"""Cross-layer equalization (Data-Free Quantization, Nagel et al. 2019) on an FP32 ONNX graph.

Depthwise networks quantize badly per tensor and even per channel: one depthwise channel's
weights (or the activation feeding it) span a range hundreds of times another's. For two
consecutive convolutions A -> act -> B, scaling A's output channel c by 1/s_c and B's input
channel c by s_c leaves the network's function unchanged when ``act`` is ReLU (positively
homogeneous) and equalizes the two weight ranges: s_c = sqrt(r_A,c / r_B,c).

ReLU6 (``Clip(0, 6)``) is not homogeneous; it is handled by clipping-aware scaling: a
channel whose pre-activation reaches 6 on the calibration data keeps s_c = 1, and the others
are scaled no further than keeps their calibrated maximum below 6, so the clip is inactive
before and after on that data (the function is unchanged there). Without calibration data,
pairs through ReLU6 are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from compressor.techniques._graph import channel_max, input_channel_absmax, node_attr
from compressor.techniques.base import Models, Technique, TunerTrial, register

SWEEPS = 3  # DFQ iterates over chains of pairs; ranges settle within a few sweeps


def find_pairs(model: Any) -> list[dict[str, Any]]:
    """Conv -> (Relu | Clip(0, m) | nothing) -> Conv chains whose middle tensors feed only the next Conv
    and whose weights are initializers; B is a plain (group 1) or a depthwise convolution."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    init_arr = {t.name: t for t in g.initializer}

    def only(t: str) -> Any | None:
        c = consumers.get(t, [])
        return c[0] if len(c) == 1 and t not in outputs else None

    pairs = []
    for a in g.node:
        if a.op_type != "Conv" or len(a.input) < 2 or a.input[1] not in inits or node_attr(a, "group", 1) != 1 \
                and node_attr(a, "group", 1) != init_arr[a.input[1]].dims[0]:
            continue
        nxt = only(a.output[0])
        act, clip_max, mid = None, None, a.output[0]
        if nxt is not None and nxt.op_type == "Relu":
            act, mid, nxt = "relu", nxt.output[0], only(nxt.output[0])
        elif nxt is not None and nxt.op_type == "Clip":
            lo, hi = _clip_bounds(nxt, init_arr)
            if lo != 0.0 or hi is None:
                continue
            act, clip_max, mid, nxt = "clip", hi, nxt.output[0], only(nxt.output[0])
        if nxt is None or nxt.op_type != "Conv" or nxt.input[0] != mid or nxt.input[1] not in inits:
            continue
        c = init_arr[a.input[1]].dims[0]
        group_b = node_attr(nxt, "group", 1)
        if group_b not in (1, c) or (group_b == 1 and init_arr[nxt.input[1]].dims[1] != c):
            continue
        pairs.append({"a": a, "b": nxt, "act": act, "clip_max": clip_max, "pre": a.output[0],
                      "depthwise_b": group_b == c and c > 1})
    return pairs


def _clip_bounds(node: Any, inits: dict[str, Any]) -> tuple[float | None, float | None]:
    from onnx import numpy_helper

    def val(i: int) -> float | None:
        if len(node.input) > i and node.input[i] in inits:
            return float(numpy_helper.to_array(inits[node.input[i]]))
        return None

    lo = val(1) if len(node.input) > 1 else node_attr(node, "min", None)
    hi = val(2) if len(node.input) > 2 else node_attr(node, "max", None)
    return lo, hi


def equalize(model: Any, feeds: list[dict[str, np.ndarray]] | None) -> dict[str, Any]:
    """Rescale every equalizable Conv pair of ``model`` in place; returns what was done.

    ``feeds``: calibration batches, for the clipping-aware scaling of pairs through ReLU6."""
    from onnx import numpy_helper

    pairs = find_pairs(model)
    if feeds is None:
        pairs = [p for p in pairs if p["act"] != "clip"]
    inits = {t.name: t for t in model.graph.initializer}
    kept_channels = 0
    for _ in range(SWEEPS):
        clip_pairs = [p for p in pairs if p["act"] == "clip"]
        pre_max = channel_max(model, [p["pre"] for p in clip_pairs], feeds) if clip_pairs and feeds else {}
        kept_channels = 0
        for p in pairs:
            a, b = p["a"], p["b"]
            w1 = numpy_helper.to_array(inits[a.input[1]]).astype(np.float64)
            w2 = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
            r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
            r2 = input_channel_absmax(w2, p["depthwise_b"])
            s = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.maximum(r2, 1e-30)), 1.0)
            if p["act"] == "clip":
                m, top = pre_max[p["pre"]].astype(np.float64), p["clip_max"]
                active = m >= top  # the clip bites on the calibration data: leave the channel alone
                s = np.where(active, 1.0, np.maximum(s, np.maximum(m, 0.0) / top))  # stay below the clip
                kept_channels += int(active.sum())
            s = np.clip(s, 1e-4, 1e4)
            w1 /= s.reshape(-1, *([1] * (w1.ndim - 1)))
            if p["depthwise_b"]:
                w2 *= s.reshape(-1, *([1] * (w2.ndim - 1)))
            else:
                w2 *= s.reshape(1, -1, *([1] * (w2.ndim - 2)))
            inits[a.input[1]].CopyFrom(numpy_helper.from_array(w1.astype(np.float32), a.input[1]))
            inits[b.input[1]].CopyFrom(numpy_helper.from_array(w2.astype(np.float32), b.input[1]))
            if len(a.input) > 2 and a.input[2] in inits:
                b1 = numpy_helper.to_array(inits[a.input[2]]).astype(np.float64) / s
                inits[a.input[2]].CopyFrom(numpy_helper.from_array(b1.astype(np.float32), a.input[2]))
    return {"equalized_pairs": len(pairs), "equalized_through_relu6": sum(p["act"] == "clip" for p in pairs),
            "relu6_channels_left_unscaled": kept_channels}


@register
class Equalization(Technique):
    """``equalization: true``: :func:`equalize` on the FP32 graph before ORT quantizes it."""

    name = "equalization"
    fields = {"equalization": (bool, Field(
        False, description="cross-layer equalization before quantizing (Data-Free Quantization): rescale "
        "consecutive Conv pairs, depthwise included, so per-channel weight ranges match; pairs through ReLU6 use "
        "clipping-aware scaling from the calibration data (engine onnxruntime)"))}
    phase = "fp32_rewrite"
    order = 10
    calibration = "optional"  # ReLU6 pairs need it; without data they are skipped
    fp32_model = False  # it rewrites the FP32 model, it does not compare against one
    modes = ("static", "dynamic")
    trials = (TunerTrial(50, {"equalization": True}, "cross-layer equalization"),)

    def apply(self, cfg: Any, models: Models) -> dict[str, Any]:
        import onnx

        model = onnx.load(str(models.fp32))
        details = equalize(model, models.feeds)
        onnx.save(model, str(models.out))
        return details

    def summary(self, cfg: Any) -> dict[str, Any]:
        return {"equalization": cfg.equalization}

    def describe(self, details: dict[str, Any]) -> str | None:
        if not details.get("equalization"):
            return None
        return (f"cross-layer equalization ({details.get('equalized_pairs', 0)} Conv pairs, "
                f"{details.get('equalized_through_relu6', 0)} through ReLU6)")
