"""``trt-ready``: does a QDQ ONNX model follow TensorRT's explicit-quantization rules?

Runs on any machine (only ``onnx`` needed), so CI can catch a model that TensorRT
would reject, or silently run in FP32, before it reaches a GPU box. Checks:

- opset >= 13 (per-channel QuantizeLinear/DequantizeLinear need it);
- every Q/DQ is signed INT8 (S8) with all zero points 0 (symmetric): TensorRT
  has no asymmetric or UINT8 quantization;
- biases stay float (no INT32 bias Q/DQ);
- activations are quantized per tensor; per-channel weight scales use the
  output-channel axis (Conv: 0, ConvTranspose: 1, MatMul: last, Gemm: 0 with transB=1
  else 1);
- every op is one TensorRT's ONNX parser supports.

>>> check_trt_ready("model.int8.onnx").ok   # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.errors import ModelLoadError

MIN_OPSET = 13

# ONNX ops (default domain) TensorRT 10's ONNX parser imports (onnx-tensorrt operators.md)
TRT_SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Bernoulli
BitShift BlackmanWindow Cast CastLike Ceil Celu Clip Compress Concat ConcatFromSequence Constant ConstantOfShape
Conv ConvTranspose Cos Cosh CumSum DFT DeformConv DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HammingWindow HannWindow
HardSigmoid HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN LRN LSTM LayerNormalization LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul MatMulInteger Max MaxPool MaxRoiPool MaxUnpool
Mean MeanVarianceNormalization Min Mish Mod Mul Multinomial Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
ParametricSoftplus Pow QLinearConv QLinearMatMul QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round STFT ScaledTanh Scan Scatter
ScatterElements ScatterND Selu SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert
SequenceLength Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
SplitToSequence Sqrt Squeeze Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

_INT8, _UINT8, _INT32 = 3, 2, 6  # onnx.TensorProto.INT8 / UINT8 / INT32


@dataclass
class TrtCheck:
    """The findings: ``problems`` block TensorRT INT8; ``ok`` when there are none."""

    path: str
    opset: int
    qdq_nodes: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.qdq_nodes > 0


def _weight_axis(consumer, input_index: int) -> int | None:
    """The output-channel axis of the weight a consumer reads at ``input_index``."""
    if consumer.op_type == "Conv" and input_index == 1:
        return 0
    if consumer.op_type == "ConvTranspose" and input_index == 1:
        return 1
    if consumer.op_type == "Gemm" and input_index == 1:
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if consumer.op_type == "MatMul" and input_index == 1:
        return -1
    return None


def check_trt_ready(path: str | Path) -> TrtCheck:
    """Check a QDQ ONNX model against TensorRT's explicit-quantization rules."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist", hint="give the path of a quantized .onnx file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors, missing external data
        raise ModelLoadError(f"{path} is not a readable ONNX model: {str(e).splitlines()[0] if str(e) else e}") from None
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    consumers: dict[str, list[tuple[object, int]]] = {}
    for n in graph.node:
        for k, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, k))

    def array(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            return None if attr is None else numpy_helper.to_array(attr.t)
        return None

    def elem_type(name: str) -> int | None:
        if name in inits:
            return inits[name].data_type
        if name in consts:
            attr = next((a for a in consts[name].attribute if a.name == "value"), None)
            return None if attr is None else attr.t.data_type
        return None

    report = TrtCheck(str(path), opset, 0)
    if opset < MIN_OPSET:
        report.problems.append(f"opset {opset} < {MIN_OPSET}: TensorRT's per-channel Q/DQ needs opset 13 or newer "
                               "(re-export with a newer opset)")
    unsupported = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                          for n in graph.node
                          if n.domain not in ("", "ai.onnx") or n.op_type not in TRT_SUPPORTED_OPS})
    if unsupported:
        report.problems.append(f"ops TensorRT's ONNX parser does not support: {', '.join(unsupported)} "
                               "(ORT-specific fusions? quantize without graph optimizations)")
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        report.qdq_nodes += 1
        where = f"{n.op_type} {n.name or n.output[0]!r}"
        if n.op_type == "DequantizeLinear" and elem_type(n.input[0]) == _INT32:
            report.problems.append(f"{where}: INT32-quantized bias; TensorRT takes float biases and fuses them "
                                   "itself (quantize with quantize_bias: false)")
            continue
        if len(n.input) < 3 or not n.input[2]:
            report.problems.append(f"{where}: no zero point, which means UINT8; TensorRT needs INT8 (zero point 0)")
        else:
            zp_type, zp = elem_type(n.input[2]), array(n.input[2])
            if zp_type not in (None, _INT8):
                name = {_UINT8: "UINT8"}.get(zp_type, f"type {zp_type}")
                report.problems.append(f"{where}: zero point is {name}; TensorRT needs signed INT8 "
                                       "(quantize with activation_type: int8, weight_type: int8)")
            if zp is not None and np.any(zp != 0):
                report.problems.append(f"{where}: zero point {np.unique(zp)[:4].tolist()} is not 0; TensorRT needs "
                                       "symmetric quantization (symmetric_activations/weights: true)")
        scale = array(n.input[1])
        if scale is None or scale.size <= 1:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if n.op_type == "QuantizeLinear" or array(n.input[0]) is None:
            report.problems.append(f"{where}: per-channel scale on an activation; TensorRT quantizes "
                                   "activations per tensor")
            continue
        rank = array(n.input[0]).ndim
        for consumer, k in consumers.get(n.output[0], []):
            want = _weight_axis(consumer, k)
            if want is not None and axis % rank != want % rank:
                report.problems.append(f"{where}: per-channel axis {axis} for {consumer.op_type} "
                                       f"{consumer.name!r} weight; the output-channel axis is {want % rank}")
    if report.qdq_nodes == 0:
        report.problems.append("no QuantizeLinear/DequantizeLinear nodes: not an explicitly quantized (QDQ) "
                               "model; TensorRT would build it in FP32/FP16")
    return report
