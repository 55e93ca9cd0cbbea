"""ONNX Runtime Mobile: the ORT format (``.ort``) plus a reduced-operator config.

The conversion is ONNX Runtime's own (``onnxruntime.tools.convert_onnx_models_to_ort``).
It writes the ``.ort`` model and ``required_operators.config``, the list of operators
a reduced ONNX Runtime build for the device needs. Options:

- ``target_platform``: ``arm`` (default: phones, Raspberry Pi; no x86-only NCHWc
  layouts) or ``amd64``;
- ``optimization_style``: ``fixed`` (optimizations baked into the file, for one
  platform) or ``runtime`` (optimizations saved and replayed when the model loads).

Here the ``.ort`` file runs in the full onnxruntime package, which reads the format.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import platform
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact, ModelArtifact, Target
from compressor.targets.devices import PROFILES
from compressor.targets.onnxruntime_cpu import OrtSession
from compressor.targets.spec import TargetOptions
from compressor.utils.ort_sessions import KEEP_FLOAT_NODES, no_spinning


@contextlib.contextmanager
def _converter_skipping(module: Any, optimizers: tuple[str, ...]):
    """ONNX Runtime's converter builds its sessions with ``module.ort.InferenceSession`` and offers no
    way to skip an optimizer: while converting, give it an ``ort`` whose InferenceSession also skips
    ``optimizers`` (everything else is the real module)."""
    real = module.ort

    class _Ort:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def InferenceSession(*args: Any, disabled_optimizers: list[str] | None = None, **kwargs: Any) -> Any:  # noqa: N802
            return real.InferenceSession(*args, disabled_optimizers=[*(disabled_optimizers or []), *optimizers],
                                         **kwargs)

    module.ort = _Ort()
    try:
        yield
    finally:
        module.ort = real


def convert_to_ort(onnx_path: Path, out_dir: Path, stem: str, *, target_platform: str = "arm",
                   optimization_style: str = "fixed", keep_fp32_nodes: bool = True) -> tuple[Path, Path]:
    """Convert ``onnx_path`` to ``out_dir/<stem>.ort`` and ``<stem>.required_operators.config``.

    The converter works in a temporary folder; the results are moved into place
    (config first), so an interrupted conversion leaves no partial ``.ort``. With
    ``keep_fp32_nodes`` the conversion skips ORT's WeightBiasQuantization, which would bake
    per-tensor INT8 weights into a node left FP32 (compressor/utils/ort_sessions.py)."""
    import onnxruntime.tools.convert_onnx_models_to_ort as converter
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    style = {"fixed": OptimizationStyle.Fixed, "runtime": OptimizationStyle.Runtime}[optimization_style]
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.ort-", dir=out_dir))
    try:
        src = work / "in" / "model.onnx"
        src.parent.mkdir()
        shutil.copyfile(onnx_path, src)
        external = onnx_path.with_name(onnx_path.name + ".data")
        if external.exists():  # the dynamo exporter writes weights beside the graph
            shutil.copyfile(external, src.with_name(external.name))
        try:
            # the converter prints progress on stdout: keep the CLI's output clean
            skip = KEEP_FLOAT_NODES if keep_fp32_nodes else ()
            with contextlib.redirect_stdout(io.StringIO()), \
                    _quiet_logger("ort_format_model", "ort_format_model.utils"), \
                    warnings.catch_warnings(), _converter_skipping(converter, skip):
                # the converter's config writer leaves a file handle to the GC
                warnings.simplefilter("ignore", ResourceWarning)
                convert_onnx_models_to_ort(src, output_dir=work / "out", optimization_styles=[style],
                                           target_platform=target_platform)
                gc.collect()
        except Exception as e:  # noqa: BLE001
            raise TargetFailed(f"ORT-format conversion of {onnx_path.name} failed: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        ort_files = sorted((work / "out").glob("*.ort"))
        configs = sorted((work / "out").glob("*.config"))
        if len(ort_files) != 1 or len(configs) != 1:
            raise TargetFailed(f"ORT-format conversion of {onnx_path.name} wrote {[p.name for p in ort_files]} "
                               f"and {[p.name for p in configs]}, expected one .ort and one .config")
        ort_path, config_path = out_dir / f"{stem}.ort", out_dir / f"{stem}.required_operators.config"
        os.replace(configs[0], config_path)
        os.replace(ort_files[0], ort_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ort_path, config_path


@contextlib.contextmanager
def _quiet_logger(*names: str):
    # ONNX Runtime's tools set their loggers' levels themselves (ort_format_model.utils: DEBUG)
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def read_operator_config(path: Path) -> dict[str, list[str]]:
    """``{"ai.onnx;17": ["Conv", ...]}`` from a required-operators config file
    (lines ``<domain>;<opset>;<op>,<op>,...``)."""
    ops: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, names = line.rpartition(";")
            ops[key] = sorted(x for x in names.split(",") if x)
    return ops


class OrtFormatSession(OrtSession):
    """An ONNX Runtime session on a ``.ort`` file."""

    def __init__(self, path: Path, threads: int, *, replay_runtime_optimizations: bool, keep_fp32_nodes: bool = True):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        so.add_session_config_entry("session.load_model_format", "ORT")
        no_spinning(so)  # as the onnxruntime target's sessions: interleaved timings stay fair
        if replay_runtime_optimizations:
            # our own conversion output, so replaying its saved optimizations is safe
            so.add_session_config_entry("session.enable_saved_runtime_optimizations", "1")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(KEEP_FLOAT_NODES) if keep_fp32_nodes else None)
        except Exception as e:  # noqa: BLE001
            raise TargetFailed(f"ONNX Runtime cannot load {path.name}: {str(e).strip().splitlines()[0]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._inputs = {i.name: i for i in self.session.get_inputs()}


class OrtFormatOptions(TargetOptions):
    """``options:`` of an ``ort-format`` target file."""

    target_platform: Literal["arm", "amd64"] = Field(
        "arm", description="arm: phones and boards (no x86-only NCHWc layouts); amd64")
    optimization_style: Literal["fixed", "runtime"] = Field(
        "fixed", description="fixed: optimizations baked in for one platform; runtime: saved and replayed at load")
    keep_fp32_nodes: bool = Field(
        True, description="convert and load without ORT's WeightBiasQuantization, which would give a Conv/Gemm "
        "left FP32 between quantized nodes per-tensor INT8 weights (compressor/utils/ort_sessions.py)")
    emulate: bool = Field(
        True, description="score INT8 accuracy for an arm64 device with ONNX Runtime's aarch64 build under "
        "qemu-aarch64 (accuracy_kernels: emulated-arm64; set up by `make arm64-env`); false: this host's kernels, "
        "faster")


class OrtMobileTarget(Target):
    consumes = "onnx"
    Options = OrtFormatOptions
    options: OrtFormatOptions

    def __init__(self, spec):
        super().__init__(spec)
        self.target_platform = self.options.target_platform
        self.optimization_style = self.options.optimization_style
        self._operators: dict[str, list[str]] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime.tools.convert_onnx_models_to_ort  # noqa: F401
        except ImportError:
            return "onnxruntime (with its tools) is not installed (pip install onnxruntime)"
        return None

    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        if model.onnx_path is None:
            raise TargetFailed(f"target {self.spec.name} needs an ONNX model")
        if model.onnx_path.suffix == ".ort":  # already converted (`compressor bench model.ort`)
            dst = out_dir / f"{model.variant}.ort"
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model.onnx_path, dst)
            return Artifact(dst, precision, [dst])
        ort_path, config = convert_to_ort(model.onnx_path, out_dir, model.variant,
                                          target_platform=self.target_platform,
                                          optimization_style=self.optimization_style,
                                          keep_fp32_nodes=self.options.keep_fp32_nodes)
        # size = what ships to the device: the .ort file (the config is a build input)
        return Artifact(ort_path, precision, [ort_path], meta={"operator_config": str(config)})

    def load(self, artifact: Artifact, *, threads: int) -> OrtSession:
        if artifact.path.suffix != ".ort":
            raise TargetFailed(f"target {self.spec.name} loads ORT-format models (.ort), not {artifact.path.name}",
                               hint="compile the model for this target first")
        config = artifact.meta.get("operator_config")
        if config and Path(config).exists():
            self._operators = read_operator_config(Path(config))
        return OrtFormatSession(artifact.path, threads,
                                replay_runtime_optimizations=self.optimization_style == "runtime",
                                keep_fp32_nodes=self.options.keep_fp32_nodes)

    def emulation_settings(self, threads: int) -> dict[str, Any]:
        return {"threads": threads,
                "disabled_optimizers": list(KEEP_FLOAT_NODES) if self.options.keep_fp32_nodes else [],
                "config": {"session.enable_saved_runtime_optimizations": "1"}
                if self.optimization_style == "runtime" else {}}

    def accuracy_emulation(self, precision: str) -> str | None:
        """INT8 artifacts for an arm64 device are scored on that device's kernels under qemu (its
        qemu CPU model: compressor/targets/devices.py PROFILES). FP32 kernels do not differ in the
        way that matters (no saturating INT8 sums), so FP32 keeps this host's faster run."""
        profile = PROFILES.get(self.spec.device or "")
        if platform.machine().lower() in ("aarch64", "arm64"):
            return None  # this host runs arm64 kernels itself
        if (not self.options.emulate or precision != "int8" or self.target_platform != "arm" or profile is None
                or profile[0] != "arm64"):
            return None
        return profile[2]

    def runtime_versions(self) -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "format": "ort", "target_platform": self.target_platform,
                "optimization_style": self.optimization_style, "required_operators": self._operators}
