"""Graph helpers the technique modules share (not a technique: the registry skips ``_`` modules)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import numpy as np


def node_attr(node: Any, name: str, default: Any) -> Any:
    """An ONNX node's attribute value, or ``default`` when it has none of that name."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def input_channel_absmax(w: np.ndarray, depthwise: bool) -> np.ndarray:
    """Largest absolute weight per input channel of a Conv weight (O, I/group, kH, kW); a depthwise
    Conv's input channel c is its output channel c."""
    a = np.abs(w)
    if depthwise:
        return a.reshape(a.shape[0], -1).max(axis=1)
    return a.transpose(1, 0, *range(2, a.ndim)).reshape(a.shape[1], -1).max(axis=1)


def channel_max(model: Any, tensors: list[str], feeds: Iterable[dict[str, np.ndarray]],
                absolute: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Per-channel maxima (axis 1) of ``tensors`` over ``feeds`` (of the absolute values for the
    tensors in ``absolute``), with ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in have)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out: dict[str, np.ndarray] = {}
    for f in feeds:
        for t, v in zip(tensors, s.run(tensors, f)):
            mx = (np.abs(v) if t in absolute else v).max(axis=tuple(i for i in range(v.ndim) if i != 1))
            out[t] = mx if t not in out else np.maximum(out[t], mx)
    return out
