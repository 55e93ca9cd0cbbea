"""compressor: distill, prune and INT8-quantize trained models, export them via ONNX
to deployment targets, and benchmark every target against the original model.

Importing this package is cheap: torch, OpenVINO and TensorRT are imported only by
the modules that need them.
"""

__version__ = "0.1.0"
