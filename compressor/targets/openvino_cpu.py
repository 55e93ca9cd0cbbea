"""OpenVINO on the CPU: ONNX (FP32 or INT8 QDQ) -> OpenVINO IR (.xml/.bin) -> compiled model.

The precision is always set explicitly: on CPUs with bf16 support OpenVINO runs an
"FP32" model in bf16 unless ``INFERENCE_PRECISION_HINT=f32`` is given. The precision
the compiled model actually uses is read back from it and recorded (``describe()``).
The ``openvino-cpu-bf16`` target file selects ``inference_precision: bf16``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact, ModelArtifact, Target
from compressor.targets.spec import TargetOptions

# target option -> OpenVINO's INFERENCE_PRECISION_HINT value, and the precision label it runs at
_PRECISIONS = {"f32": ("f32", "fp32"), "bf16": ("bf16", "bf16"), "f16": ("f16", "fp16")}


def write_ir(onnx_path: Path, xml_path: Path) -> list[Path]:
    """Convert ``onnx_path`` to OpenVINO IR at ``xml_path`` (+ ``.bin``), atomically.

    Both files are written in a temporary folder beside the destination and moved into
    place .bin first, so a complete-looking .xml never points at a missing .bin."""
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    bin_path = xml_path.with_suffix(".bin")
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", dir=xml_path.parent))
    try:
        try:
            model = ov.convert_model(str(onnx_path))
            # keep FP32 weights as FP32: the default would compress them to FP16 on disk
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises its own exception types
            raise TargetFailed(f"OpenVINO cannot convert {onnx_path.name}: {str(e).strip().splitlines()[0]}") from None
        os.replace(tmp / "model.bin", bin_path)
        os.replace(tmp / "model.xml", xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [xml_path, bin_path]


def copy_ir(src_xml: Path, xml_path: Path) -> list[Path]:
    """Copy an IR pair, .bin first (a complete-looking .xml never points at a missing .bin)."""
    from compressor.utils.io import atomic_path

    for a, b in ((src_xml.with_suffix(".bin"), xml_path.with_suffix(".bin")), (src_xml, xml_path)):
        if a.resolve() != b.resolve():
            with atomic_path(b) as tmp:
                shutil.copyfile(a, tmp)
    return [xml_path, xml_path.with_suffix(".bin")]


class OpenVinoSession:
    """A compiled OpenVINO model with one infer request (batch-1 latency use)."""

    def __init__(self, xml_path: Path, *, threads: int, precision_hint: str, device: str = "CPU"):
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision_hint,
            "INFERENCE_NUM_THREADS": threads,
        }
        try:
            self.compiled = core.compile_model(str(xml_path), device, config)
        except Exception as e:  # noqa: BLE001
            raise TargetFailed(f"OpenVINO cannot compile {xml_path.name} for {device}: "
                               f"{str(e).strip().splitlines()[0]}") from None
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.any_name for i in self.compiled.inputs]
        self._outputs = list(self.compiled.outputs)
        # what OpenVINO actually runs at, read back (it can differ from the hint)
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.num_threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.device_name = core.get_property(device, "FULL_DEVICE_NAME")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self.request.infer(feeds)
        # copy: the request reuses its output buffers on the next call
        return [np.array(res[o]) for o in self._outputs]

    def bind(self, feeds: dict[str, np.ndarray]):
        """Latency timing: bind the inputs once (shared memory) and time ``infer()`` alone,
        as benchmark_app does; ``infer(feeds)`` adds ~30 us of Python per call."""
        import openvino as ov

        self._bound = {n: np.ascontiguousarray(feeds[n]) for n in self.input_names}  # keep alive
        for port in self.compiled.inputs:
            self.request.set_tensor(port, ov.Tensor(self._bound[port.any_name], shared_memory=True))
        return self.request.infer


class OpenVinoOptions(TargetOptions):
    """``options:`` of an ``openvino`` target file."""

    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32", description="INFERENCE_PRECISION_HINT: what FP32 models run at (bf16 on AMX/AVX512-BF16 CPUs)")
    device: str = Field("CPU", min_length=1, description="the OpenVINO device the model compiles for")


class OpenVinoCpuTarget(Target):
    consumes = "onnx"
    Options = OpenVinoOptions
    options: OpenVinoOptions

    def __init__(self, spec):
        super().__init__(spec)
        self.precision_hint = self.options.inference_precision
        self._loaded: dict[str, Any] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "openvino is not installed (pip install openvino)"
        return None

    def precision_for(self, variant_precision: str) -> str:
        # INT8 models keep their QDQ precision (weight-only INT4/INT8 their weight precision);
        # their non-quantized ops run at the hint
        if variant_precision in ("int8", "int4"):
            return variant_precision
        return _PRECISIONS[self.precision_hint][1]

    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        if model.onnx_path is None:
            raise TargetFailed(f"target {self.spec.name} needs an ONNX model")
        xml = out_dir / f"{model.variant}.xml"
        if model.onnx_path.suffix == ".xml":  # already IR (e.g. NNCF weight compression): copy it
            files = copy_ir(model.onnx_path, xml)
            return Artifact(xml, self.precision_for(precision), files, meta={"format": "openvino-ir"})
        files = write_ir(model.onnx_path, xml)
        return Artifact(xml, self.precision_for(precision), files, meta={"format": "openvino-ir"})

    def load(self, artifact: Artifact, *, threads: int) -> OpenVinoSession:
        if artifact.path.suffix != ".xml":
            raise TargetFailed(f"target {self.spec.name} loads OpenVINO IR (.xml), not {artifact.path.name}",
                               hint="compile the model for this target first")
        session = OpenVinoSession(artifact.path, threads=threads, precision_hint=self.precision_hint,
                                  device=self.options.device)
        self._loaded = {"inference_precision": session.inference_precision, "threads": session.num_threads,
                        "performance_hint": "LATENCY", "cpu": session.device_name}
        return session

    def runtime_versions(self) -> dict[str, str]:
        import openvino

        return {"openvino": openvino.__version__}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "precision_hint": self.precision_hint, **self._loaded}
