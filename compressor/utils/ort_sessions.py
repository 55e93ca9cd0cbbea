"""ONNX Runtime graph optimizers that compressor's own sessions turn off, and why.

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
