"""ExecuTorch with the XNNPACK delegate: torch.export -> .pte, FP32 or INT8.

INT8 uses torchao's PT2E flow with ExecuTorch's ``XNNPACKQuantizer`` (per-channel
symmetric weights, calibrated on the run's calibration data); the quantized graph
is lowered with ``to_edge_transform_and_lower`` and the ``XnnpackPartitioner``.
The ``.pte`` is exported for a fixed batch of 1 (``max_batch``): ExecuTorch plans
memory for the example input's shapes. It runs here in ``executorch.runtime``.

This target consumes the torch model, so ``compile`` needs torch and runs in the
parent process; ``load``/``run`` need only executorch (and torch for its tensors).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact, ModelArtifact, Target
from compressor.targets.spec import TargetOptions
from compressor.utils.io import atomic_write_bytes

EXPORT_BATCH = 1


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def quantize_pt2e(model: Any, example: tuple, calibration: list[tuple], *, per_channel: bool = True) -> Any:
    """PT2E INT8 with the XNNPACK quantizer: export, prepare, calibrate, convert."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    graph = torch.export.export(model, example).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
    return convert_pt2e(prepared)


def export_pte(model: Any, example: tuple) -> bytes:
    """torch.export + XNNPACK lowering -> the .pte program bytes."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(model, example)
    return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer


class ExecuTorchSession:
    """The ``forward`` method of a .pte program in executorch.runtime."""

    def __init__(self, path: Path, *, threads: int, input_names: list[str]):
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        # XNNPACK's threadpool is process-wide; sized here so "2 threads" means 2
        _unsafe_reset_threadpool(threads)
        try:
            program = Runtime.get().load_program(str(path))
            self.method = program.load_method("forward")
        except Exception as e:  # noqa: BLE001
            raise TargetFailed(f"ExecuTorch cannot load {path.name}: {_first_line(e)}") from None
        if self.method is None:
            raise TargetFailed(f"{path.name} has no 'forward' method")
        meta = self.method.metadata
        self.input_names = input_names[: meta.num_inputs()] if hasattr(meta, "num_inputs") else input_names

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        outs = self.method.execute([torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names])
        return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outs]


class ExecuTorchOptions(TargetOptions):
    """``options:`` of an ``executorch`` target file."""

    calibration_samples: int = Field(128, ge=1, description="PT2E calibration samples (batches of 1)")
    per_channel: bool = Field(True, description="per-channel weight scales (else per tensor)")


class ExecuTorchXnnpackTarget(Target):
    consumes = "torch"
    max_batch = EXPORT_BATCH
    Options = ExecuTorchOptions
    options: ExecuTorchOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        from importlib.util import find_spec

        # find_spec, not import: importing the XNNPACK backend pulls in torch and torchao,
        # too slow (and noisy) for `compressor targets list`
        missing = [m for m in ("torch", "executorch", "torchao") if find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed (pip install executorch torchao)"
        return None

    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        import torch

        if model.torch_model is None and model.onnx_path is not None and model.onnx_path.suffix == ".pte":
            # an already exported program (`compressor bench model.pte --target executorch-xnnpack`)
            dst = out_dir / f"{model.variant}.pte"
            if model.onnx_path.resolve() != dst.resolve():
                atomic_write_bytes(dst, model.onnx_path.read_bytes())
            return Artifact(dst, precision, [dst], meta={"input_names": ["input"]})
        if model.torch_model is None:
            raise TargetFailed(f"target {self.spec.name} needs the torch model (this recipe gives an ONNX model)",
                               hint="use model.factory + weights for ExecuTorch")
        calib_fn = model.meta.get("calibration")
        if calib_fn is None:
            raise TargetFailed(f"target {self.spec.name} needs the run's data for example inputs")
        data = calib_fn()
        names = data.input_names
        example = tuple(torch.from_numpy(data.first(EXPORT_BATCH)[n]) for n in names)
        t0 = time.perf_counter()
        net = model.torch_model.eval()
        detail: dict[str, Any] = {"export_batch": EXPORT_BATCH, "input_names": names}
        try:
            if precision == "int8":
                calib = [tuple(torch.from_numpy(feeds[n]) for n in names)
                         for feeds, _ in data.subset(self.options.calibration_samples).batches(EXPORT_BATCH)]
                per_channel = self.options.per_channel
                net = quantize_pt2e(net, example, calib, per_channel=per_channel)
                # what this export did, not the quantizer's default
                detail.update(quantizer="XNNPACKQuantizer", per_channel=per_channel, symmetric=True,
                              calibration_samples=len(calib))
            elif precision != "fp32":
                raise TargetFailed(f"target {self.spec.name} builds fp32 or int8, not {precision}")
            buffer = export_pte(net, example)
        except TargetFailed:
            raise
        except Exception as e:  # noqa: BLE001 - torch.export / lowering raise many types
            raise TargetFailed(f"ExecuTorch export of {model.variant} failed: {_first_line(e)}") from None
        dst = atomic_write_bytes(out_dir / f"{model.variant}.pte", buffer)
        detail["export_seconds"] = round(time.perf_counter() - t0, 2)
        return Artifact(dst, precision, [dst], meta=detail)

    def load(self, artifact: Artifact, *, threads: int) -> ExecuTorchSession:
        if artifact.path.suffix != ".pte":
            raise TargetFailed(f"target {self.spec.name} loads ExecuTorch programs (.pte), not {artifact.path.name}",
                               hint="compile the model for this target first")
        self._threads = threads
        # how the program was quantized, as compile recorded it (reported by describe())
        self._export = {k: artifact.meta[k] for k in ("quantizer", "per_channel", "symmetric", "calibration_samples")
                        if k in artifact.meta}
        return ExecuTorchSession(artifact.path, threads=threads,
                                 input_names=list(artifact.meta.get("input_names") or ["input"]))

    def runtime_versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"executorch": version("executorch"), "torch": version("torch")}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "delegate": "XNNPACK", "batch": EXPORT_BATCH,
                "threads": getattr(self, "_threads", None), **getattr(self, "_export", {})}
