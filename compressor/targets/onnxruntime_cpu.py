"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact, ModelArtifact, Target, parse_options
from compressor.targets.spec import TargetOptions
from compressor.utils.io import atomic_path
from compressor.utils.ort_sessions import KEEP_FLOAT_NODES, no_spinning

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeOptions(TargetOptions):
    """``options:`` of an ``onnxruntime`` target file."""

    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ORT graph optimizations (GraphOptimizationLevel)")
    disabled_optimizers: list[str] = Field(
        default_factory=list, description="ORT graph optimizers to skip, by name (e.g. SkipLayerNormFusion)")
    spinning: bool = Field(
        False, description="let ORT's intra-op worker threads spin between calls (ORT's own default): a little "
        "faster for one model called back to back, but the spinning threads take the cores from every other model "
        "timed in the same process, which skews interleaved (paired) speedups (compressor/utils/ort_sessions.py)")
    keep_fp32_nodes: bool = Field(
        True, description="also skip WeightBiasQuantization, which re-quantizes (per tensor, INT8) the float "
        "weights of a Conv/Gemm left FP32 next to quantized nodes (compressor/utils/ort_sessions.py); false: "
        "ORT's own default optimizers")


def session_options(threads: int, options: OnnxRuntimeOptions | dict[str, Any]) -> tuple[Any, list[str]]:
    """ORT SessionOptions and the disabled graph optimizers for a target's ``options``."""
    import onnxruntime as ort

    opts = options if isinstance(options, OnnxRuntimeOptions) else parse_options(OnnxRuntimeOptions, options,
                                                                                   "onnxruntime session")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[opts.graph_optimization_level])
    if not opts.spinning:
        no_spinning(so)
    keep = [o for o in KEEP_FLOAT_NODES if o not in opts.disabled_optimizers] if opts.keep_fp32_nodes else []
    return so, [*opts.disabled_optimizers, *keep]


class OrtSession:
    def __init__(self, path: Path, threads: int, options: OnnxRuntimeOptions | dict[str, Any],
                 providers: list[str] | None = None):
        import onnxruntime as ort

        so, disabled = session_options(threads, options)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"],
                                                disabled_optimizers=disabled or None)
        except Exception as e:
            raise TargetFailed(f"ONNX Runtime cannot load {path.name}: {str(e).splitlines()[0]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)

    def input_meta(self) -> list[tuple[str, list, str]]:
        types = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}
        return [(i.name, list(i.shape), types.get(i.type, "float32")) for i in self.session.get_inputs()]


class OnnxRuntimeTarget(Target):
    consumes = "onnx"
    Options = OnnxRuntimeOptions
    options: OnnxRuntimeOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        assert model.onnx_path is not None
        dst = out_dir / f"{model.variant}.onnx"
        if model.onnx_path.resolve() != dst.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(model.onnx_path, tmp)
        return Artifact(dst, precision, [dst])

    def load(self, artifact: Artifact, *, threads: int) -> OrtSession:
        return OrtSession(artifact.path, threads, self.options)

    def emulation_settings(self, threads: int) -> dict[str, Any]:
        keep = [o for o in KEEP_FLOAT_NODES if o not in self.options.disabled_optimizers] \
            if self.options.keep_fp32_nodes else []
        return {"threads": threads, "graph_optimization_level": self.options.graph_optimization_level,
                "disabled_optimizers": [*self.options.disabled_optimizers, *keep]}

    def runtime_versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}
