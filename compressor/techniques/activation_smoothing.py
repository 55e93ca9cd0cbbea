"""Activation smoothing (SmoothQuant, Xiao et al. 2023, applied to convolutions) on an FP32 ONNX
graph.

Activations are quantized per tensor, so a tensor whose channels span very different ranges
rounds its small channels coarsely. When every producer of a tensor is a Conv (whose output
channel c can be divided by s_c: its weights and bias) and every consumer is a Conv (whose
input channel c can be multiplied by s_c), the function is unchanged and the channel's range
moves into the consumers' weights, which are quantized per channel:

    s_c = a_c ** alpha / w_c ** (1 - alpha)

with a_c the channel's largest absolute value on the calibration data and w_c the largest
absolute consumer weight on that input channel. Two kinds of place:

- streams: tensors joined by Adds (a stage of MobileNetV2's inverted residuals: the
  projections' outputs, the block sums and the expansions that read them) share one s, so each
  Add still adds like with like; a Conv output read only by Convs is a stream of one tensor;
- Conv -> ReLU/ReLU6 -> Conv pairs (:func:`~compressor.techniques.equalization.find_pairs`);
  through ReLU6 with cross-layer equalization's rule: a channel the clip bites on keeps s = 1,
  the others stay under the clip on the calibration data.

On MobileNetV2 (cross-layer equalization before, GPTQ rounding and bias correction after) the
INT8 error was activation rounding, the residual streams its largest share; smoothing at alpha
0.6 took the softmax KL to FP32 from 0.0238 to 0.0144 and top-1 agreement from 89.9% to 92.9%
(ONNX Runtime) on 1,000 photo crops; see docs/quantization.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from compressor.techniques._graph import channel_max, input_channel_absmax, node_attr
from compressor.techniques.base import Models, Technique, TunerTrial, register
from compressor.techniques.equalization import find_pairs

ALPHA = 0.6  # the tuner's value: the best of 0.3-0.75 on MobileNetV2 (docs/quantization.md)
SCALE_LIMIT = 1e3  # s_c is kept within [1/limit, limit] of its geometric mean


@dataclass
class Stream:
    """Tensors joined by Adds (or one tensor), the Convs that write them and the Convs that read them."""

    tensors: set[str] = field(default_factory=set)
    producers: list[Any] = field(default_factory=list)
    consumers: list[Any] = field(default_factory=list)


def find_streams(model: Any) -> list[Stream]:
    """Every stream of ``model`` that can be smoothed: its tensors are written only by Convs (or by
    Adds of the stream's own tensors) and read only by Convs (as their data input) or those Adds; no
    tensor is a graph output. The Convs' weights are initializers."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for n in g.node:
        if n.op_type == "Add" and len(n.input) == 2 and not (set(n.input) & inits):
            for i in n.input:
                parent[root(i)] = root(n.output[0])
        elif n.op_type == "Conv" and consumers.get(n.output[0]):
            root(n.output[0])
    groups: dict[str, Stream] = {}
    for t in parent:
        groups.setdefault(root(t), Stream()).tensors.add(t)

    streams = []
    for s in groups.values():
        ok = not (s.tensors & outputs)
        for t in s.tensors:
            p = producer.get(t)
            if p is not None and p.op_type == "Conv" and len(p.input) > 1 and p.input[1] in inits:
                s.producers.append(p)
            elif p is None or p.op_type != "Add":
                ok = False
            for c in consumers.get(t, []):
                if c.op_type == "Add" and c.output[0] in s.tensors:
                    continue
                if c.op_type == "Conv" and c.input[0] == t and len(c.input) > 1 and c.input[1] in inits:
                    s.consumers.append(c)
                else:
                    ok = False
        if ok and s.producers and s.consumers:
            streams.append(s)
    return sorted(streams, key=lambda s: min(s.tensors))


def _scales(a: np.ndarray, w: np.ndarray, alpha: float, anchor: np.ndarray | None = None) -> np.ndarray:
    """s = a^alpha / w^(1-alpha) per channel, divided by its geometric mean over ``anchor`` (the
    channels that must keep s = 1, e.g. those a clip bites on; all channels when None or empty)."""
    s = np.where((a > 0) & (w > 0), np.maximum(a, 1e-30) ** alpha / np.maximum(w, 1e-12) ** (1 - alpha), 1.0)
    ref = s[anchor] if anchor is not None and anchor.any() else s
    return np.clip(s / np.exp(np.mean(np.log(ref))), 1 / SCALE_LIMIT, SCALE_LIMIT)


def smooth(model: Any, feeds: list[dict[str, np.ndarray]], alpha: float) -> dict[str, Any]:
    """Smooth every stream (:func:`find_streams`) and every Conv -> ReLU/ReLU6 -> Conv pair of
    ``model`` in place; returns what was done."""
    from onnx import numpy_helper

    streams = find_streams(model)
    pairs = [p for p in find_pairs(model) if p["act"] is not None]  # a pair without one is a stream
    inits = {t.name: t for t in model.graph.initializer}
    stream_tensors = sorted({t for s in streams for t in s.tensors})
    amax = channel_max(model, stream_tensors, feeds, absolute=stream_tensors)
    pre = channel_max(model, [p["pre"] for p in pairs], feeds)

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    def put(name: str, v: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(v.astype(np.float32), name))

    def rescale(producers: list[Any], consumers: list[Any], scale: np.ndarray) -> None:
        """Divide the producers' output channels by ``scale``, multiply the consumers' input channels."""
        for p in producers:
            put(p.input[1], get(p.input[1]) / scale.reshape(-1, *([1] * (len(inits[p.input[1]].dims) - 1))))
            if len(p.input) > 2 and p.input[2] in inits:
                put(p.input[2], get(p.input[2]) / scale)
        for c in consumers:
            depthwise = node_attr(c, "group", 1) > 1
            put(c.input[1], get(c.input[1]) * (scale.reshape(-1, 1, 1, 1) if depthwise else scale.reshape(1, -1, 1, 1)))

    done, tensors, spreads = 0, 0, []
    for s in streams:
        a = np.max([amax[t] for t in s.tensors], axis=0).astype(np.float64)
        ws = []
        for c in s.consumers:
            w = get(c.input[1])
            depthwise = node_attr(c, "group", 1) > 1
            if w.ndim != 4 or (not depthwise and w.shape[1] != a.size) or (depthwise and w.shape[0] != a.size):
                break  # grouped (not depthwise) or not 2-D: leave the stream as it is
            ws.append(input_channel_absmax(w, depthwise))
        else:
            rescale(s.producers, s.consumers, _scales(a, np.max(ws, axis=0), alpha))
            done += 1
            tensors += len(s.tensors)
            spreads.append(float(a.max() / max(np.median(a), 1e-12)))
    clipped = 0
    for p in pairs:
        m = pre[p["pre"]].astype(np.float64)
        w = input_channel_absmax(get(p["b"].input[1]), p["depthwise_b"])
        if p["act"] == "clip":
            # the ReLU6 rule of cross-layer equalization: a channel the clip bites on keeps s = 1, the
            # others stay under the clip on the calibration data (the function is unchanged there)
            top = p["clip_max"]
            active = m >= top
            scale = np.where(active, 1.0, np.maximum(_scales(np.clip(m, 0, top), w, alpha, active), m / top))
            clipped += 1
        else:
            scale = _scales(np.maximum(m, 0), w, alpha)
        rescale([p["a"]], [p["b"]], np.where(m > 0, scale, 1.0))
    return {"smoothed_streams": done, "smoothed_tensors": tensors, "smoothed_pairs": len(pairs),
            "smoothed_through_relu6": clipped,
            "stream_range_spread": round(max(spreads), 1) if spreads else None}


@register
class ActivationSmoothing(Technique):
    """``activation_smoothing: ALPHA``: :func:`smooth` on the FP32 graph before ORT quantizes it."""

    name = "activation_smoothing"
    fields = {"activation_smoothing": (float | None, Field(
        None, ge=0.0, le=1.0, description="SmoothQuant-style smoothing of the tensors between convolutions "
        "(residual streams included) before quantizing: each channel's activation range moves into the consuming "
        "Convs' weights by s = a^alpha / w^(1-alpha); the value is alpha (0.6 measured best on MobileNetV2; "
        "needs calibration data; engine onnxruntime)"))}
    phase = "fp32_rewrite"
    order = 15  # after cross-layer equalization, which it does not undo (it scales the other weight axis)
    fp32_model = False
    # one FP32 rewrite (a calibration pass): before GPTQ; and with the other three, the last technique trial
    trials = (TunerTrial(65, {"activation_smoothing": ALPHA}, "activation smoothing"),
              TunerTrial(85, {"equalization": True, "activation_smoothing": ALPHA, "bias_correction": "fast",
                              "weight_rounding": "gptq"}, "all four together"))

    def apply(self, cfg: Any, models: Models) -> dict[str, Any]:
        import onnx

        model = onnx.load(str(models.fp32))
        details = smooth(model, models.feeds or [], cfg.activation_smoothing)
        onnx.save(model, str(models.out))
        return details

    def summary(self, cfg: Any) -> dict[str, Any]:
        return {"activation_smoothing": cfg.activation_smoothing}

    def describe(self, details: dict[str, Any]) -> str | None:
        if details.get("activation_smoothing") is None:
            return None
        n, pairs = details.get("smoothed_streams", 0), details.get("smoothed_pairs", 0)
        head = f"activation smoothing (alpha {details['activation_smoothing']:g}"
        if not n and not pairs:
            return f"{head}): no Conv stream or pair to smooth"
        return (f"{head}, {n} Conv streams of {details.get('smoothed_tensors', 0)} tensors, {pairs} Conv pairs "
                f"through an activation, {details.get('smoothed_through_relu6', 0)} of them ReLU6)")
