"""MatMulNBits zero points the fast kernels take.

- HQQ (onnxruntime's HQQWeightOnlyQuantizer) writes float zero points, which ONNX Runtime
  1.31 runs on its slow unpacked path (dequantize B every call: ~0.2x FP32 decode on
  SmolLM2-135M) and without an accuracy_level. :func:`integer_zero_points` rewrites them as
  uint8 zero points (``round(z)``) plus, with ``mode="blocksum"``, the exact remainder
  ``s * (round(z) - z)`` per block as an offset term (blocksum.py): the same weights on the
  packed int kernels. ``mode="integer"`` drops the remainder and rounds the original weights
  again onto HQQ's scales and the rounded zero points (no extra ops, not HQQ's weights).
- NNCF on an ONNX model writes 4-bit zero points one per byte ([N, blocks]) where
  MatMulNBits wants two per byte: :func:`pack_zero_points` packs them.

    >>> details = integer_zero_points(model, "blocksum", accuracy_level=4)   # doctest: +SKIP
    >>> details["float_zero_point_layers"]                                    # doctest: +SKIP
    210
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.steps.weight_only.blocksum import BlockSums


def _attrs(node: Any) -> dict[str, int]:
    return {a.name: a.i for a in node.attribute if a.type == a.INT}


def _set_attr(node: Any, name: str, value: int) -> None:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            a.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))


def pack4(values: np.ndarray) -> np.ndarray:
    """uint8 [N, G] values 0..15 -> [N * ceil(G/2)] bytes, even block in the low nibble
    (MatMulNBits' 4-bit zero point layout)."""
    v = np.pad(values.astype(np.uint8), ((0, 0), (0, values.shape[1] % 2)))
    return (v[:, 0::2] | (v[:, 1::2] << 4)).astype(np.uint8).reshape(-1)


def _requantize(w_kn: np.ndarray, scales: np.ndarray, zi: np.ndarray, block: int, bits: int) -> np.ndarray:
    """MatMulNBits' B [N, G, block*bits/8] for ``w`` on the grid ``scales * (q - zi)``."""
    k, n = w_kn.shape
    g = scales.shape[1]
    w = np.zeros((n, g * block), np.float32)
    w[:, :k] = w_kn.T
    safe = np.where(scales != 0, scales, 1.0)[..., None]
    q = np.clip(np.round(w.reshape(n, g, block) / safe + zi[..., None]), 0, 2 ** bits - 1).astype(np.uint8)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8) if bits == 4 else q


def integer_zero_points(model: Any, mode: str, accuracy_level: int,
                        originals: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Rewrite ``model``'s MatMulNBits nodes with float zero points in place (see module doc);
    ``originals`` (MatMul name -> float weight [K, N]) are what ``mode="integer"`` re-rounds."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes: list[Any] = []
    new_inits: list[Any] = []
    sums = BlockSums()
    done, max_rest = 0, 0.0
    for node in model.graph.node:
        zp_init = inits.get(node.input[3]) if node.op_type == "MatMulNBits" and len(node.input) > 3 else None
        zp = numpy_helper.to_array(zp_init) if zp_init is not None else None
        if zp is None or zp.dtype.kind != "f":
            nodes.append(node)
            continue
        a = _attrs(node)
        k, n, bits, block = a["K"], a["N"], a["bits"], a["block_size"]
        g = -(-k // block)
        z = zp.reshape(n, g).astype(np.float32)
        zi = np.clip(np.round(z), 0, 2 ** bits - 1)
        packed = pack4(zi) if bits == 4 else zi.astype(np.uint8).reshape(-1)
        name = f"{node.name or node.output[0]}.zp_int"
        new_inits.append(numpy_helper.from_array(packed, name))
        node.input[3] = name
        _set_attr(node, "accuracy_level", accuracy_level)
        done += 1
        scales = numpy_helper.to_array(inits[node.input[2]]).reshape(n, g).astype(np.float32)
        if mode != "blocksum":
            w = (originals or {}).get(node.name.rsplit("_Q", 1)[0])  # ORT names it <MatMul>_Q4
            if w is not None:
                b_name = f"{node.name or node.output[0]}.B_int"
                new_inits.append(numpy_helper.from_array(_requantize(w, scales, zi, block, bits), b_name))
                node.input[1] = b_name
            nodes.append(node)
            continue
        rest = (scales * (zi - z)).T  # [G, N]: w = s*(q - z) = s*(q - zi) + s*(zi - z)
        max_rest = max(max_rest, float(np.abs(rest).max()))
        out = node.output[0]
        node.output[0] = f"{node.name or out}.main"
        nodes.append(node)
        sums.add(nodes, new_inits, node.input[0], k=k, block=block, offset=rest, main=node.output[0], out=out,
                 prefix=node.name or out)
    used = {i for nd in nodes for i in nd.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + new_inits)
    return {"zero_points": mode, "float_zero_point_layers": done, "max_offset_term": max_rest}


def pack_zero_points(model: Any, accuracy_level: int) -> int:
    """Pack NNCF's one-per-byte 4-bit zero points and set ``accuracy_level`` on every
    MatMulNBits node NNCF wrote (it writes 0); returns how many nodes it changed."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        a = _attrs(node)
        _set_attr(node, "accuracy_level", accuracy_level)
        changed += 1
        zp_init = inits.get(node.input[3]) if len(node.input) > 3 else None
        if zp_init is None or a["bits"] != 4 or len(zp_init.dims) != 2:
            continue
        zp_init.CopyFrom(numpy_helper.from_array(pack4(numpy_helper.to_array(zp_init)), zp_init.name))
    return changed
