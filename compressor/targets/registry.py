"""The one list of runtimes: name -> "module:Class", imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from compressor.errors import RecipeError

if TYPE_CHECKING:  # type names only: the spec module looks runtimes up here while loading a file
    from compressor.targets.base import Target
    from compressor.targets.spec import TargetOptions, TargetSpec

RUNTIMES: dict[str, str] = {
    "onnxruntime": "compressor.targets.onnxruntime_cpu:OnnxRuntimeTarget",
    "openvino": "compressor.targets.openvino_cpu:OpenVinoCpuTarget",
    "ort-format": "compressor.targets.ort_mobile:OrtMobileTarget",
    "executorch": "compressor.targets.executorch_xnnpack:ExecuTorchXnnpackTarget",
    "tensorrt": "compressor.targets.tensorrt_gpu:TensorRtTarget",
}


def import_target_class(ref: str) -> type[Target]:
    """The class a ``module:Class`` reference names: a RUNTIMES value, as a benchmark job
    carries it into its child process.

    >>> import_target_class(RUNTIMES["onnxruntime"]).__name__
    'OnnxRuntimeTarget'
    """
    module, _, cls = ref.partition(":")
    return getattr(importlib.import_module(module), cls)


def target_class(runtime: str) -> type[Target]:
    if runtime not in RUNTIMES:
        raise RecipeError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(sorted(RUNTIMES))}")
    return import_target_class(RUNTIMES[runtime])


def options_model(runtime: str) -> type[TargetOptions]:
    """The typed ``options:`` model of ``runtime``. Imports the target's module, which
    imports its runtime only when used, so this stays cheap (no torch, no OpenVINO)."""
    return target_class(runtime).Options


def make_target(spec: TargetSpec) -> Target:
    return target_class(spec.runtime)(spec)
