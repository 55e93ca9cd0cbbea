"""INT8 post-training quantization with ONNX Runtime (QDQ, static or dynamic)."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import DataError, StepError
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.base import Step
from compressor.utils.io import atomic_path

if TYPE_CHECKING:
    from compressor.pipeline import RunContext


class DatasetReader:
    """ORT CalibrationDataReader over a :class:`Dataset`, in fixed-size batches."""

    def __init__(self, data: Dataset, input_names: list[str], batch_size: int, progress=None):
        self._batches = [
            {n: np.ascontiguousarray(feeds[n] if n in feeds else next(iter(feeds.values()))) for n in input_names}
            for feeds, _ in data.batches(batch_size)
        ]
        self._i = 0
        self._progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        if self._progress:
            self._progress(self._i, len(self._batches))
        return self._batches[self._i - 1]

    def rewind(self) -> None:
        self._i = 0


def preprocess(src: Path, dst: Path) -> dict[str, Any]:
    """ORT's quant_pre_process (shape inference + graph optimisation). Symbolic shape
    inference asserts on some transformer graphs: retry without it and record that."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with _quiet():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return {"preprocess": "full"}
    except Exception as first:  # noqa: BLE001 - ORT raises AssertionError, Exception, ...
        try:
            with _quiet():
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return {"preprocess": "skip_symbolic_shape", "preprocess_note": f"{type(first).__name__}: {str(first)[:200]}"}
        except Exception as e:  # noqa: BLE001
            return {"preprocess": "none", "preprocess_note": f"{type(e).__name__}: {str(e)[:200]}"}


@contextlib.contextmanager
def _quiet():
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def quantize_onnx(
    src: Path, dst: Path, cfg: QuantizeConfig, calibration: Dataset | None, *, progress=None,
    nodes_to_exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Quantize ``src`` to ``dst`` (atomically) with ORT; returns what was done."""
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    details: dict[str, Any] = {"engine": "onnxruntime", "mode": cfg.mode}
    exclude = sorted(set(cfg.nodes_to_exclude) | set(nodes_to_exclude or []))
    with tempfile.TemporaryDirectory(prefix="compressor-quant-") as tmpdir:
        pre = Path(tmpdir) / "preprocessed.onnx"
        details.update(preprocess(src, pre))
        model_in = pre if details["preprocess"] != "none" else src
        names = [i.name for i in onnx.load(str(model_in), load_external_data=False).graph.input]
        try:
            with atomic_path(dst) as tmp, _quiet():
                if cfg.mode == "dynamic":
                    quantize_dynamic(
                        str(model_in), str(tmp), weight_type=qtype[cfg.weight_type], per_channel=cfg.per_channel,
                        reduce_range=cfg.reduce_range, op_types_to_quantize=cfg.op_types, nodes_to_exclude=exclude,
                        extra_options={"WeightSymmetric": cfg.symmetric_weights},
                    )
                else:
                    if calibration is None or len(calibration) == 0:
                        raise StepError("static quantization needs calibration data", hint="set data.calibration")
                    calibration.check_finite()
                    reader = DatasetReader(calibration, names, cfg.calibration_batch_size, progress)
                    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[cfg.calibration]
                    extra = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": cfg.symmetric_weights}
                    if not cfg.quantize_bias:
                        extra["QuantizeBias"] = False
                    if cfg.calibration == "percentile":
                        extra["CalibPercentile"] = cfg.percentile
                    quantize_static(
                        str(model_in), str(tmp), reader, quant_format=QuantFormat.QDQ,
                        activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
                        per_channel=cfg.per_channel, reduce_range=cfg.reduce_range, calibrate_method=method,
                        op_types_to_quantize=cfg.op_types, nodes_to_exclude=exclude, extra_options=extra,
                    )
        except (StepError, DataError):
            raise
        except Exception as e:  # noqa: BLE001
            raise StepError(f"ONNX Runtime quantization failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    details.update({
        "calibration": cfg.calibration if cfg.mode == "static" else None,
        "calibration_samples": len(calibration) if (cfg.mode == "static" and calibration is not None) else 0,
        "per_channel": cfg.per_channel, "activation_type": cfg.activation_type if cfg.mode == "static" else "dynamic",
        "weight_type": cfg.weight_type, "nodes_excluded": exclude, "format": "QDQ" if cfg.mode == "static" else "QOperator",
    })
    return details


class QuantizeStep(Step):
    """INT8 post-training quantization of the exported ONNX model."""

    kind = "quantize"
    domain = "onnx"
    config: QuantizeConfig

    def output_precision(self) -> str:
        return "int8"

    def run(self, model: Path, ctx: RunContext) -> Path:
        cfg = ctx.quant_config(self.config)
        dst = ctx.artifacts_dir / f"{self.name}.onnx"
        t0 = time.perf_counter()
        calib = ctx.calibration_data() if cfg.mode == "static" else None
        with ctx.progress.task(f"{self.name}: calibrating", total=None) as update:
            details = quantize_onnx(model, dst, cfg, calib, progress=lambda i, n: update(i, n))
        self.report.details.update(details)
        self.report.seconds = time.perf_counter() - t0
        return dst
