"""HQQ for OpenVINO targets: each MatMul weight gets onnxruntime's HQQ solution (4-bit codes,
scales and optimised float zero points, per group along the input axis) as an OpenVINO
compressed-weight subgraph ``(Convert(u4 codes) - zero) * scale``, which the CPU plugin
runs as a compressed MatMul with float zero points (no re-rounding, unlike MatMulNBits).
The INT8 layers (``mixed``) and the embedding are left to an NNCF INT8 pass.

    >>> hqq_openvino(ov_model, group_size=32, skip={"lm_head"})   # doctest: +SKIP
    210
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compressor.errors import StepError


def hqq_codes(weight_nk: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes uint8 [N, K], scale [N, G], zero float [N, G]) with ``w ~= (codes - zero) * scale``,
    from onnxruntime's HQQ solver (HQQWeightOnlyQuantizer.quantize_internal)."""
    import torch
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, HQQWeightOnlyQuantizer

    solver = HQQWeightOnlyQuantizer(HQQWeightOnlyQuantConfig(block_size=group_size, bits=4))
    q, scale, zero = solver.quantize_internal(torch.from_numpy(np.ascontiguousarray(weight_nk, np.float32)), bits=4,
                                              group_size=group_size)
    n, k = weight_nk.shape
    return (q.reshape(n, -1)[:, :k].numpy().astype(np.uint8), scale.reshape(n, -1).numpy().astype(np.float32),
            zero.reshape(n, -1).numpy().astype(np.float32))


def hqq_openvino(model: Any, group_size: int, skip: set[str]) -> int:
    """Replace every constant-weight MatMul of ``model`` not named in ``skip`` by its HQQ
    compressed form, in place; returns how many it replaced."""
    import openvino as ov
    import openvino.opset13 as ops

    done = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name() in skip or op.get_transpose_a():
            continue
        w_node = op.input_value(1).get_node()
        if w_node.get_type_name() != "Constant" or len(w_node.get_output_shape(0)) != 2:
            continue
        w = w_node.get_data().astype(np.float32)
        w = w if op.get_transpose_b() else w.T  # [N, K]
        n, k = w.shape
        if k % group_size:
            raise StepError(f"HQQ on OpenVINO needs group_size to divide every layer's input width ({op.get_friendly_name()}: "
                            f"{k} is not a multiple of {group_size})")
        codes, scale, zero = hqq_codes(w, group_size)
        g = k // group_size
        c = ops.convert(ops.constant(codes.reshape(n, g, group_size), ov.Type.u4), ov.Type.f32)
        wf = ops.multiply(ops.subtract(c, ops.constant(zero[..., None])), ops.constant(scale[..., None]))
        wf = ops.reshape(wf, ops.constant(np.array([n, k], np.int64)), special_zero=False)
        new = ops.matmul(op.input_value(0), wf, transpose_a=False, transpose_b=True)
        new.set_friendly_name(op.get_friendly_name())
        op.output(0).replace(new.output(0))
        done += 1
    model.validate_nodes_and_infer_types()
    return done
