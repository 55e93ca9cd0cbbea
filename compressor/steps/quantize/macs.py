"""How much of a quantized model's compute runs in INT8: multiply-accumulates of its Conv,
MatMul and Gemm nodes (and their integer forms), with shapes from ONNX shape inference.

A size ratio cannot tell a model with 58 layers left in FP32 from a fully INT8 one; the share
of MACs in INT8 can. Dimensions that shape inference leaves symbolic (batch, sequence) count
as 1, so the share is per sample (and per token for sequence models).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# compute ops and the index of their weight input
_FLOAT_OPS = {"Conv": 1, "MatMul": 1, "Gemm": 1, "ConvTranspose": 1}
_INT_OPS = {"ConvInteger": 1, "MatMulInteger": 1, "QLinearConv": 3, "QLinearMatMul": 3}


def _dims(shape: Any) -> list[int] | None:
    if shape is None:
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in shape.dim]


def mac_summary(path: Path) -> dict[str, Any]:
    """``{"macs": total, "int8_macs": ..., "int8_mac_share": 0..1, "fp32_compute_nodes": [...]}``.

    A float Conv/MatMul/Gemm counts as INT8 when both its activation and its weight come
    from a DequantizeLinear (the QDQ form ORT, NNCF and PT2E write); the integer ops
    (MatMulInteger, ConvInteger, QLinear*) always do. Nodes whose shapes cannot be inferred
    are left out of both totals and listed under ``unknown_shape``."""
    total = int8 = 0
    fp32_nodes: list[str] = []
    unknown: list[str] = []
    for name, macs, is_int8 in _compute_nodes(path):
        if macs is None:
            unknown.append(name)
            continue
        total += macs
        if is_int8:
            int8 += macs
        else:
            fp32_nodes.append(name)
    return {"macs": total, "int8_macs": int8, "int8_mac_share": round(int8 / total, 6) if total else 0.0,
            "fp32_compute_nodes": fp32_nodes, **({"unknown_shape": unknown} if unknown else {})}


def node_macs(path: Path) -> dict[str, int]:
    """MACs per sample of every compute node of the model at ``path`` whose shapes are known,
    by node name: what the accuracy-aware tuner's FP32 fallback subtracts from the INT8 share."""
    return {name: macs for name, macs, _ in _compute_nodes(path) if macs is not None}


def _compute_nodes(path: Path) -> list[tuple[str, int | None, bool]]:
    """(name, MACs or None when shapes are unknown, runs in INT8) of every compute node."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - shape inference fails on some contrib ops: count what is known
        pass
    g = model.graph
    shapes: dict[str, list[int] | None] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        shapes[v.name] = _dims(v.type.tensor_type.shape) if v.type.tensor_type.HasField("shape") else None
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:  # a DequantizeLinear of an initializer has the initializer's shape
        if n.op_type == "DequantizeLinear" and n.input[0] in shapes and n.output[0] not in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]

    def from_dq(name: str) -> bool:
        p = producer.get(name)
        return p is not None and p.op_type == "DequantizeLinear"

    rows = []
    for n in g.node:
        w_idx = _FLOAT_OPS.get(n.op_type, _INT_OPS.get(n.op_type))
        if w_idx is None:
            continue
        is_int8 = n.op_type in _INT_OPS or (from_dq(n.input[0]) and from_dq(n.input[w_idx]))
        rows.append((n.name, _node_macs(n, w_idx, shapes), is_int8))
    return rows


def _node_macs(n: Any, w_idx: int, shapes: dict[str, list[int] | None]) -> int | None:
    """MACs of one compute node: output elements x reduction length."""
    out = shapes.get(n.output[0])
    a = shapes.get(n.input[0])
    w = shapes.get(n.input[w_idx]) if len(n.input) > w_idx else None
    if out is None or w is None:
        return None
    if n.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        return math.prod(out) * math.prod(w[1:])  # Cin/group x kernel per output element
    if n.op_type == "ConvTranspose":
        return (math.prod(a) if a else 0) * math.prod(w[1:])
    if n.op_type == "Gemm":
        trans_a = next((at.i for at in n.attribute if at.name == "transA"), 0)
        k = (a[0] if trans_a else a[-1]) if a else None
        return math.prod(out) * k if k else None
    k = a[-1] if a else (w[-2] if len(w) >= 2 else None)  # MatMul: A [..., M, K] x B [..., K, N]
    return math.prod(out) * k if k else None
