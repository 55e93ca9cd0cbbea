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


def target_class(runtime: str) -> type[Target]:
    if runtime not in RUNTIMES:
        raise RecipeError(f"unknown runtime {runtime!r}; known runtimes: {', '.join(sorted(RUNTIMES))}")
    module, _, cls = RUNTIMES[runtime].partition(":")
    return getattr(importlib.import_module(module), cls)


def options_model(runtime: str) -> type[TargetOptions]:
    """The typed ``options:`` model of ``runtime``. Imports the target's module, which
    imports its runtime only when used, so this stays cheap (no torch, no OpenVINO)."""
    return target_class(runtime).Options


def make_target(spec: TargetSpec) -> Target:
    return target_class(spec.runtime)(spec)
