"""Lossless GGUF re-encoding (``weight_quantize: {algorithm: gguf}``): the Q4_0/Q4_1/Q5_0/
Q5_1/Q8_0/Q4_K/Q6_K blocks of the source GGUF become ONNX Runtime ``MatMulNBits`` and
OpenVINO compressed weights with the same integer codes and scales: nothing is rounded again.

- Q4_0 / Q8_0: codes, fp16 scales and the fixed zero point (8 / 128) map one to one.
- Q5_0 / Q6_K: 5- and 6-bit codes in 8-bit ``MatMulNBits`` (zero point 16 / 32; Q6_K in
  blocks of 16, its sub-block); no 5/6-bit kernel exists, so they cost 8-bit size, not accuracy.
- Q4_K: 4-bit codes, per-32 scales ``d*sc`` and offsets ``-dmin*m``, kept like Q4_1's.
- Q4_1 / Q5_1 (``w = d*q + m``): ``MatMulNBits`` takes integer zero points only exactly, so the
  offset is kept as its own term: ``x @ W = MatMulNBits(x; q, d, zp mid) + blocksum(x) @ M``
  with ``mid`` the middle of the code range (8 / 16) and ``M = m + mid*d`` (blocksum.py: a 0/1
  MatMul sums each block of x). ``d*(q - mid)`` and ``m + mid*d`` are exact float32 values
  (few significant bits), so the weights equal gguf's ``d*q + m`` bit for bit (the tests check
  it); centring matters for the int8-activation kernels (accuracy_level 4), whose rounding
  error grows with the weights' magnitude: SmolLM2 Q4_1 scored +1.37 % perplexity with zero
  point 0 and +0.14 % centred. ``offsets="float_zero_point"`` writes ``zp = -m/d`` as a float zero point
  instead (one op, float rounding of the offset). OpenVINO gets the float zero point (its
  CPU plugin folds Convert -> Subtract -> Multiply weight subgraphs into compressed kernels).

A weight that is not on a kept grid (another GGUF type, or not found) stays FP32 and is
listed per layer in the details: FP32 is its own source, so it costs size, not accuracy.

    >>> reencode_onnx(Path("fp32.onnx"), Path("int4.onnx"), Path("m.Q4_1.gguf"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.steps.weight_only.blocksum import BlockSums
from compressor.steps.weight_only.gguf_blocks import KINDS, BlockGrid, Match, match_weights, read_grids
from compressor.utils.io import atomic_path

MS = "com.microsoft"
OFFSET_MID = {"Q4_1": 8, "Q4_K": 8, "Q5_1": 16}  # the middle of each offset grid's code range


def _pack4(codes: np.ndarray) -> np.ndarray:
    """uint8 [..., 2m] values 0..15 -> [..., m] bytes, even element in the low nibble."""
    return (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)


def nbits_arrays(grid: BlockGrid, float_zero_point: bool = False) -> dict[str, np.ndarray]:
    """MatMulNBits' B, scales and zero_points for ``grid`` (+ ``offset`` [G, N] for Q4_1 unless
    the offset is folded into a float zero point)."""
    n, k = grid.shape
    g = k // grid.block
    blocks = grid.codes.reshape(n, g, grid.block)
    out = {"B": _pack4(blocks) if grid.bits == 4 else blocks.copy(), "scales": grid.scale.reshape(-1).copy()}
    if grid.offset is not None and float_zero_point:
        safe = np.where(grid.scale != 0, grid.scale, 1)
        out["zero_points"] = np.where(grid.scale != 0, -grid.offset / safe, 0).astype(np.float32).reshape(-1)
        return out
    # an offset grid is centred (module doc): zero point mid, the offset term carries m + mid*d
    mid = 0 if grid.offset is None else OFFSET_MID[grid.kind]
    zp = np.full((n, g), grid.zero + mid, np.uint8)
    if grid.bits == 4:
        zp = _pack4(np.pad(zp, ((0, 0), (0, g % 2))))
    out["zero_points"] = zp.reshape(-1)
    if grid.offset is not None:
        out["offset"] = np.ascontiguousarray((grid.offset + np.float32(mid) * grid.scale).T)
    return out


def dequantize_nbits(b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, k: int, n: int, bits: int,
                     offset: np.ndarray | None = None, block: int = 32) -> np.ndarray:
    """The float32 [K, N] weight a MatMulNBits node (+ its offset term) computes with."""
    g = k // block
    if bits == 4:
        q = np.stack([b & 0x0F, b >> 4], axis=-1).reshape(n, g, block)
    else:
        q = b.reshape(n, g, block)
    if zero_points.dtype == np.float32:
        zp = zero_points.reshape(n, g)
    elif bits == 4:
        zp = np.stack([zero_points & 0x0F, zero_points >> 4], -1).reshape(n, -1)[:, :g]
    else:
        zp = zero_points.reshape(n, g)
    w = scales.reshape(n, g, 1) * (q.astype(np.float32) - zp.astype(np.float32)[..., None])
    if offset is not None:
        w = w + offset.T[..., None]
    return w.reshape(n, k).T


def _require_some(found: dict[str, Match], gguf_path: Path) -> None:
    from compressor.errors import StepError

    if not found:
        raise StepError(f"{gguf_path.name} holds no {'/'.join(KINDS)} tensor that is a MatMul weight of the "
                        "model (other types and float files: use algorithm rtn / hqq / gptq)")


def _layer_report(names: list[str], found: dict[str, Match], others: dict[str, str]) -> dict[str, Any]:
    kept = {n: f"{m.grid.name} ({m.grid.kind}{', rows reordered' if m.permuted and ' + ' not in m.grid.name else ''})" for n, m in found.items()}
    other = ", ".join(sorted({f"{k}: {v}" for k, v in others.items()})) or "none"
    fp32 = {n: f"kept FP32 (no {'/'.join(KINDS)} tensor with these values; other GGUF 2-D tensors: {other})"
            for n in names if n not in found}
    counts: dict[str, int] = {}
    for m in found.values():
        counts[m.grid.kind] = counts.get(m.grid.kind, 0) + 1
    return {"exact_layers": len(found), "fp32_layers": fp32, "kinds": counts, "layers": kept}


def reencode_onnx(src: Path, dst: Path, gguf_path: Path, accuracy_level: int = 4,
                  offsets: str = "blocksum") -> dict[str, Any]:
    """Rewrite every MatMul of ``src`` whose weight is a GGUF grid as MatMulNBits; returns details."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    grids, others = read_grids(gguf_path)
    inits = {i.name: i for i in model.graph.initializer}
    mms = [n for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits]
    found = match_weights({n.name: numpy_helper.to_array(inits[n.input[1]]) for n in mms}, grids)
    _require_some(found, gguf_path)
    nodes, new_inits, used = [], [], set()
    sums = BlockSums()
    for node in model.graph.node:
        m = found.get(node.name) if node.op_type == "MatMul" else None
        if m is None:
            nodes.append(node)
            used.update(node.input)
            continue
        arrays = nbits_arrays(m.grid, offsets == "float_zero_point")
        n, k = m.grid.shape
        p = node.name
        for key in ("B", "scales", "zero_points"):
            new_inits.append(numpy_helper.from_array(arrays[key], f"{p}.gguf.{key}"))
        y = node.output[0] if "offset" not in arrays else f"{p}.gguf.main"
        nodes.append(helper.make_node("MatMulNBits", [node.input[0]] + [f"{p}.gguf.{x}" for x in ("B", "scales", "zero_points")],
                                      [y], name=p, domain=MS, K=k, N=n, bits=m.grid.bits, block_size=m.grid.block,
                                      accuracy_level=accuracy_level))
        used.add(node.input[0])
        if "offset" in arrays:  # y += blocksum(x) @ M: the Q4_1 offsets, exact
            sums.add(nodes, new_inits, node.input[0], k=k, block=m.grid.block, offset=arrays["offset"], main=y,
                     out=node.output[0], prefix=f"{p}.gguf")
    used.update(o for nd in model.graph.node for o in nd.output)
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + new_inits)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    details = {"engine": "gguf-matmulnbits", "source": gguf_path.name, "q4_1_offsets": offsets,
               "accuracy_level": accuracy_level, "weight_matmuls": len(mms)}
    return details | _layer_report([n.name for n in mms], found, others)


def reencode_openvino(src: Path, gguf_path: Path) -> tuple[Any, dict[str, Any]]:
    """The OpenVINO model of ``src`` (ONNX) with every GGUF-grid MatMul weight compressed
    (u4 / i8 codes, f32 scales and zero points); returns (ov.Model, details)."""
    import openvino as ov
    import openvino.opset13 as ops

    model = ov.Core().read_model(str(src))
    grids, others = read_grids(gguf_path)
    mms = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"
           and op.input_value(1).get_node().get_type_name() == "Constant"
           and not op.get_transpose_b() and not op.get_transpose_a()]
    weights = {op.get_friendly_name(): op.input_value(1).get_node().get_data() for op in mms}
    found = match_weights(weights, grids)
    _require_some(found, gguf_path)
    for op in mms:
        m = found.get(op.get_friendly_name())
        if m is None:
            continue
        g = m.grid
        n, k = g.shape
        shape3 = [n, k // g.block, g.block]
        if g.kind == "Q8_0":
            codes = ops.constant((g.codes.astype(np.int16) - 128).astype(np.int8).reshape(shape3), ov.Type.i8)
            w = ops.convert(codes, ov.Type.f32)
        else:  # u4 (Q4_*) or u8 (Q5_*, Q6_K) codes minus a zero point (float where the grid has offsets)
            codes_, scale, zp = _openvino_zero_points(g)
            codes = ops.constant(codes_.reshape(shape3), ov.Type.u4 if g.bits == 4 else ov.Type.u8)
            w = ops.subtract(ops.convert(codes, ov.Type.f32), ops.constant(zp[..., None]))
        w = ops.multiply(w, ops.constant((g.scale if g.kind == "Q8_0" else scale)[..., None].astype(np.float32)))
        w = ops.reshape(w, ops.constant(np.array([n, k], np.int64)), special_zero=False)
        new = ops.matmul(op.input_value(0), w, transpose_a=False, transpose_b=True)
        new.set_friendly_name(op.get_friendly_name())
        op.output(0).replace(new.output(0))
    model.validate_nodes_and_infer_types()
    details = {"engine": "gguf-openvino", "source": gguf_path.name, "q4_1_offsets": "float_zero_point",
               "weight_matmuls": len(mms)}
    return model, details | _layer_report(list(weights), found, others)


def _openvino_zero_points(g: BlockGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [N, K], scale [N, G], float zero points [N, G]) with ``scale * (codes - zp)`` = the
    grid. An offset grid's ``w = s*q + m`` becomes ``zp = -m/s``; a block whose scale is 0 holds
    ``m`` alone (Q4_K's 6-bit sub-block scale can be 0): it gets scale ``m``, codes 1, zp 0."""
    n, k = g.shape
    if g.offset is None:
        return g.codes, g.scale, np.full(g.scale.shape, g.zero, np.float32)
    flat = g.scale == 0
    scale = np.where(flat, g.offset, g.scale).astype(np.float32)
    zp = np.where(flat, 0, -g.offset / np.where(flat, 1, g.scale)).astype(np.float32)
    codes = g.codes.reshape(n, -1, g.block).copy()
    codes[flat] = 1
    return codes.reshape(n, k), scale, zp


def reencode_step(engine: str, base: Path, dst: Path, gguf_path: Path, accuracy_level: int = 4) -> dict[str, Any]:
    """The ``weight_quantize: {algorithm: gguf}`` step for one engine (``onnxruntime``: MatMulNBits
    into ``dst`` .onnx; ``openvino``: IR into ``dst`` .xml); details include ``precision``."""
    from compressor.errors import StepError

    if not gguf_path.is_file():
        raise StepError(f"weight_quantize algorithm gguf needs the source GGUF file ({gguf_path} not found)")
    if engine == "onnxruntime":
        details = reencode_onnx(base, dst, gguf_path, accuracy_level)
    else:
        from compressor.steps.weight_only.openvino import save_ir

        model, details = reencode_openvino(base, gguf_path)
        save_ir(model, dst)
    details["precision"] = "int4" if {"Q4_0", "Q4_1", "Q4_K"} & set(details["kinds"]) else "int8"
    return details
