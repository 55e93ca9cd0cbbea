"""Graph helpers the technique modules share (not a technique: the registry skips ``_`` modules)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def node_attr(node: Any, name: str, default: Any) -> Any:
    """An ONNX node's attribute value, or ``default`` when it has none of that name."""
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def channel_max(model: Any, tensors: list[str], feeds: Iterable[dict[str, np.ndarray]],
                absolute: bool = False) -> dict[str, np.ndarray]:
    """Per-channel maxima (axis 1) of ``tensors`` over ``feeds`` (of their absolute values with
    ``absolute``), with ONNX Runtime."""
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
            mx = (np.abs(v) if absolute else v).max(axis=tuple(i for i in range(v.ndim) if i != 1))
            out[t] = mx if t not in out else np.maximum(out[t], mx)
    return out
