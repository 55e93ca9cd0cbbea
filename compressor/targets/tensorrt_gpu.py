"""TensorRT on an NVIDIA GPU: ONNX -> serialized engine (.engine), FP32/FP16/INT8.

INT8 is *explicit* quantization: the QDQ graph (signed INT8, zero point 0, made by
the pipeline with this target's ``quantization:`` settings) carries the scales, so
no TensorRT calibrator is used. ``compressor targets trt-check`` checks those rules
on any machine. Inference copies inputs to the GPU with torch and times runs with
CUDA events (``latency_ms`` from ``run`` then reflects GPU time per call).

TensorRT cannot be installed on every machine (it needs CUDA and an NVIDIA GPU):
there ``unavailable_reason()`` says so and the pipeline records the target as failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact, ModelArtifact, Target
from compressor.targets.spec import TargetOptions
from compressor.utils.io import atomic_write_bytes

INSTALL_HINT = "pip install tensorrt on a machine with an NVIDIA GPU and CUDA"


class TensorRtSession:
    """A deserialized engine with one execution context; I/O through torch CUDA tensors."""

    def __init__(self, engine_path: Path, *, input_names: list[str] | None = None):
        import tensorrt as trt
        import torch

        self._torch = torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise TargetFailed(f"TensorRT cannot deserialize {engine_path.name} (built by another TensorRT version "
                               "or GPU?)", hint="rebuild the engine on this machine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._trt = trt
        self.stream = torch.cuda.Stream()
        self.last_gpu_ms: float | None = None

    def _dtype(self, name: str):
        return self._torch.from_numpy(np.zeros(1, dtype=self._trt.nptype(self.engine.get_tensor_dtype(name)))).dtype

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        keep = []
        for name in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda(non_blocking=True)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
            keep.append(t)
        outs = []
        for name in self.output_names:
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtype(name), device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outs.append(out)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self.stream):
            start.record(self.stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise TargetFailed("TensorRT execution failed")
            end.record(self.stream)
        end.synchronize()
        self.last_gpu_ms = start.elapsed_time(end)  # GPU time of this call, by CUDA events
        return [o.float().cpu().numpy() for o in outs]


def build_engine(onnx_path: Path, *, precision: str, workspace_mib: int, max_batch: int, opt_batch: int) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine for ``precision``.

    fp16: FP16 kernels allowed; int8: the QDQ nodes define the INT8 layers (explicit
    quantization) and FP16 is allowed for the rest."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TargetFailed(f"TensorRT cannot parse {onnx_path.name}: {errors}",
                           hint=f"run `compressor targets trt-check {onnx_path}`")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the QDQ nodes; no calibrator
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if any(d < 0 for d in shape[1:]):
            raise TargetFailed(f"input {tensor.name!r} has dynamic non-batch dims {shape}",
                               hint="export with fixed shapes except the batch")
        profile.set_shape(tensor.name, [1, *shape[1:]], [opt_batch, *shape[1:]], [max_batch, *shape[1:]])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TargetFailed(f"TensorRT could not build an engine for {onnx_path.name} at {precision}")
    return bytes(serialized)


class TensorRtOptions(TargetOptions):
    """``options:`` of a ``tensorrt`` target file."""

    fp16: bool = Field(True, description="build FP32 variants with FP16 kernels allowed")
    workspace_mib: int = Field(1024, ge=1, description="builder workspace memory pool")
    opt_batch: int = Field(1, ge=1, description="the batch the optimization profile tunes for")
    max_batch: int = Field(64, ge=1, description="the largest batch the engine accepts")

    @model_validator(mode="after")
    def _batches(self) -> TensorRtOptions:
        if self.opt_batch > self.max_batch:
            raise ValueError(f"opt_batch ({self.opt_batch}) must not exceed max_batch ({self.max_batch})")
        return self


class TensorRtTarget(Target):
    consumes = "onnx"
    Options = TensorRtOptions
    options: TensorRtOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return f"tensorrt is not installed ({INSTALL_HINT})"
        try:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA GPU is visible (TensorRT needs an NVIDIA GPU and a CUDA build of torch for I/O)"
        except ImportError:
            return "torch is not installed (used for CUDA buffers and CUDA-event timing)"
        return None

    def precision_for(self, variant_precision: str) -> str:
        # FP32 models build with FP16 kernels when the target file asks for it
        if variant_precision == "fp32" and self.options.fp16:
            return "fp16"
        return variant_precision

    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        if model.onnx_path is None:
            raise TargetFailed(f"target {self.spec.name} needs an ONNX model")
        run_precision = self.precision_for(precision)
        if run_precision == "int8":
            from compressor.targets.trt_check import check_trt_ready

            check = check_trt_ready(model.onnx_path)
            if not check.ok:
                raise TargetFailed(f"{model.onnx_path.name} is not TensorRT-ready: {check.problems[0]}",
                                   hint="use the tensorrt target's quantization settings (S8/S8 symmetric)")
        opts = self.options
        engine = build_engine(model.onnx_path, precision=run_precision, workspace_mib=opts.workspace_mib,
                              max_batch=opts.max_batch, opt_batch=opts.opt_batch)
        dst = atomic_write_bytes(out_dir / f"{model.variant}.{run_precision}.engine", engine)
        return Artifact(dst, run_precision, [dst], meta={"format": "tensorrt-engine"})

    def load(self, artifact: Artifact, *, threads: int) -> TensorRtSession:
        if artifact.path.suffix != ".engine":
            raise TargetFailed(f"target {self.spec.name} loads TensorRT engines (.engine), not {artifact.path.name}")
        return TensorRtSession(artifact.path)

    def runtime_versions(self) -> dict[str, str]:
        try:
            import tensorrt
        except ImportError:
            return {}
        return {"tensorrt": tensorrt.__version__}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - description only
            pass
        return info
