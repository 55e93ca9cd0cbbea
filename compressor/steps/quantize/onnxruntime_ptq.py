"""INT8 post-training quantization with ONNX Runtime (QDQ, static or dynamic): the bottom of
the quantize package, importing nothing above it (step -> engines -> tuning -> this)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import DataError, RecipeError, StepError
from compressor.recipe.steps.quantize import QuantizeConfig
from compressor.techniques import Models, Technique, calibration_error, in_phase_order, techniques
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


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


def even_batch_size(samples: int, requested: int) -> int:
    """The largest batch size <= ``requested`` that divides ``samples``.

    ORT's histogram calibrators (entropy, percentile) stack every batch's activations with
    ``np.asarray`` and fail with numpy's "inhomogeneous shape" error when the last batch is
    shorter; moving-average min/max would weigh a short last batch like a full one. Equal
    batches avoid both without dropping or repeating a sample (a prime count gives batch 1:
    slower, still exact)."""
    requested = max(1, min(requested, samples))
    return next(b for b in range(requested, 0, -1) if samples % b == 0)


def calibration_batch_size(cfg: QuantizeConfig, samples: int) -> int:
    """The batch size calibration actually runs with (see :func:`even_batch_size`)."""
    if cfg.calibration in ("entropy", "percentile") or cfg.moving_average:
        return even_batch_size(samples, cfg.calibration_batch_size)
    return cfg.calibration_batch_size  # plain min/max merges per-batch extremes: any last batch works


def preprocess(src: Path, dst: Path) -> dict[str, Any]:
    """ORT's quant_pre_process (shape inference + graph optimisation). Symbolic shape
    inference asserts on some transformer graphs: retry without it and record that."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = src.resolve(), dst.resolve()
    try:
        # when symbolic shape inference is incomplete, ORT dumps sym_shape_infer_temp.onnx
        # (+ external data) into the working folder: keep that inside dst's folder
        with quiet(), _working_dir(dst.parent):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return {"preprocess": "full"}
    except Exception as first:  # noqa: BLE001 - ORT raises AssertionError, Exception, ...
        try:
            with quiet(), _working_dir(dst.parent):
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return {"preprocess": "skip_symbolic_shape", "preprocess_note": f"{type(first).__name__}: {str(first)[:200]}"}
        except Exception as e:  # noqa: BLE001
            return {"preprocess": "none", "preprocess_note": f"{type(e).__name__}: {str(e)[:200]}"}


@contextlib.contextmanager
def _working_dir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _quantize(model_in: Path, dst: Path, cfg: QuantizeConfig, calibration: Dataset | None, names: list[str],
              exclude: list[str], progress, calibration_cache: Path | None = None,
              weight_overrides: dict[str, list[dict[str, Any]]] | None = None) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with atomic_path(dst) as tmp, quiet():
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
            reader = DatasetReader(calibration, names, calibration_batch_size(cfg, len(calibration)), progress)
            method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                      "percentile": CalibrationMethod.Percentile}[cfg.calibration]
            extra = {"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": cfg.symmetric_weights}
            if not cfg.quantize_bias:
                extra["QuantizeBias"] = False
            if weight_overrides:  # per-layer weight granularity (ORT's TensorQuantOverrides)
                extra["TensorQuantOverrides"] = weight_overrides
            if cfg.calibration == "percentile":
                extra["CalibPercentile"] = cfg.percentile
            if cfg.moving_average:
                if cfg.calibration != "minmax":
                    raise StepError(f"moving_average applies to minmax calibration, not {cfg.calibration}",
                                    hint="set calibration: minmax or drop moving_average")
                extra["CalibMovingAverage"] = True
            quantize_static(
                str(model_in), str(tmp), reader, quant_format=QuantFormat.QDQ,
                activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
                per_channel=cfg.per_channel, reduce_range=cfg.reduce_range, calibrate_method=method,
                op_types_to_quantize=cfg.op_types, nodes_to_exclude=exclude, extra_options=extra,
                **({"calibration_cache_path": str(calibration_cache)} if calibration_cache else {}),
            )


def _without_initializer_shapes(src: Path, dst: Path, details: dict[str, Any]) -> Path:
    """The dynamo exporter records value_info for initializers (e.g. a Linear head's
    weight); ORT's quantizer rewrites those tensors and its shape inference then fails
    ("Inferred shape and existing shape differ"). Drop that redundant value_info."""
    import onnx

    model = onnx.load(str(src))
    inits = {i.name for i in model.graph.initializer}
    keep = [v for v in model.graph.value_info if v.name not in inits]
    if len(keep) == len(model.graph.value_info):
        return src
    details["dropped_initializer_value_info"] = len(model.graph.value_info) - len(keep)
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    onnx.save(model, str(dst))
    return dst


# samples used for the techniques' statistics (calibration data, at most)
STAT_SAMPLES = 256


def active_techniques(cfg: QuantizeConfig, phase: str | None = None) -> list[Technique]:
    """The registered techniques ``cfg`` asks for, in the order the engine applies them (only
    ``phase``'s when given)."""
    return [t for t in in_phase_order() if t.active(cfg) and phase in (None, t.phase)]


def _stat_feeds(cfg: QuantizeConfig, calibration: Dataset | None, names: list[str]) -> list[dict[str, np.ndarray]] | None:
    """Calibration batches for the techniques' statistics (equalization's ReLU6 ranges, weight
    rounding's input Hessians, bias correction's means); None: no data, or no technique reads it."""
    if cfg.mode != "static" or calibration is None or len(calibration) == 0 or not any(
            t.calibration != "none" for t in active_techniques(cfg)):
        return None
    data = calibration.subset(STAT_SAMPLES, seed=0) if len(calibration) > STAT_SAMPLES else calibration
    return [{n: np.ascontiguousarray(f[n] if n in f else next(iter(f.values()))) for n in names}
            for f, _ in data.batches(16)]


def _rewritten(t: Technique, cfg: QuantizeConfig, src: Path, dst: Path, feeds: list[dict[str, np.ndarray]] | None,
               details: dict[str, Any]) -> Path:
    """``src`` with the FP32 rewrite ``t`` applied, saved to ``dst``."""
    details.update(t.apply(cfg, Models(fp32=src, out=dst, feeds=feeds)))
    return dst


def rewrite_fp32(src: Path, dst: Path, cfg: QuantizeConfig, calibration: Dataset | None) -> dict[str, Any]:
    """The FP32 rewrites ``cfg`` asks for (phase ``fp32_rewrite``: cross-layer equalization) applied
    to ``src`` into ``dst``, once: the tuner quantizes the rewritten model with them turned off
    (:func:`fp32_rewrites_off`) in every later trial, instead of rewriting again for each candidate
    (their statistics depend only on the calibration data, not on the quantization settings)."""
    import onnx

    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]
    feeds = _stat_feeds(cfg, calibration, names)
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="compressor-rewrite-") as tmpdir, atomic_path(dst) as tmp:
        model = src
        rewrites = active_techniques(cfg, "fp32_rewrite")
        for k, t in enumerate(rewrites):
            model = _rewritten(t, cfg, model, tmp if k == len(rewrites) - 1 else Path(tmpdir) / f"{k}.onnx",
                               feeds, details)
        if not rewrites:
            shutil.copyfile(src, tmp)
    return {**details, **{k: v for t in rewrites for k, v in t.summary(cfg).items()}}


def fp32_rewrites_off(cfg: QuantizeConfig) -> dict[str, Any]:
    """The settings that turn off the FP32 rewrites ``cfg`` asks for (a model they already made is
    quantized with these)."""
    return {k: v for t in active_techniques(cfg, "fp32_rewrite") for k, v in t.off().items()}


def quantized_rewrites_off() -> dict[str, Any]:
    """The settings that turn off every technique that rewrites the quantized model (the phases
    after ORT quantized it): a per-layer ranking does without them, which would cost a pass per node."""
    return {k: v for t in in_phase_order() if t.phase != "fp32_rewrite" for k, v in t.off().items()}


def fp32_tag(cfg: QuantizeConfig) -> str:
    """A file-name tag of the FP32 model ``cfg`` quantizes (activation ranges differ per model):
    ``fp32`` for the model as given, else the FP32 rewrites' names."""
    return "-".join(t.name for t in active_techniques(cfg, "fp32_rewrite")) or "fp32"


def check_node_names(requested: list[str], graph_nodes: set[str]) -> None:
    """ORT silently ignores unknown names in nodes_to_exclude, so a renamed node (another
    exporter version) would quietly be quantized: refuse names the graph does not have."""
    missing = [n for n in requested if n not in graph_nodes]
    if missing:
        import difflib

        close = sorted({c for m in missing for c in difflib.get_close_matches(m, graph_nodes, n=3)})
        raise RecipeError(
            f"quantize.nodes_to_exclude: {', '.join(map(repr, missing[:5]))} not in the model's graph"
            + (f" (close: {', '.join(close[:6])})" if close else ""),
            hint="list node names with `compressor inspect artifacts/baseline.onnx`",
        )


def _with_rewritten_gemms(exclude: list[str], graphs: list[Any]) -> list[str]:
    """ORT's dynamic quantizer first rewrites each Gemm into ``<name>_MatMul`` + ``<name>_Add``
    and then matches nodes_to_exclude against the new names, so an excluded Gemm would quietly
    stay quantized: exclude its MatMul too."""
    gemms = {n.name for g in graphs for n in g.node if n.op_type == "Gemm"}
    return sorted(set(exclude) | {f"{n}_MatMul" for n in exclude if n in gemms})


def quantize_onnx(
    src: Path, dst: Path, cfg: QuantizeConfig, calibration: Dataset | None, *, progress=None,
    nodes_to_exclude: list[str] | None = None, calibration_cache: Path | None = None,
    skip_preprocess: bool = False, weight_overrides: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Quantize ``src`` to ``dst`` (atomically) with ORT; returns what was done.

    ``weight_overrides``: ORT ``TensorQuantOverrides`` for weight initializers (``[{"axis": a}]``
    makes one weight per-channel, ``[{}]`` per-tensor, whatever ``cfg.per_channel`` says).

    ``calibration_cache``: a JSON file of activation ranges, written on the first call
    and reused after (tuning loops re-quantize many times with one calibration).
    ``skip_preprocess``: ``src`` already went through :func:`preprocess`."""
    import onnx

    details: dict[str, Any] = {"engine": "onnxruntime", "mode": cfg.mode}
    exclude = sorted(set(cfg.nodes_to_exclude) | set(nodes_to_exclude or []))
    fp32_rewrites = active_techniques(cfg, "fp32_rewrite")
    rewrites = [t for t in active_techniques(cfg) if t.phase != "fp32_rewrite"]
    missing = calibration_error(cfg)
    if missing and (cfg.mode != "static" or calibration is None or len(calibration) == 0):
        raise StepError(missing[0], hint=missing[1])
    with tempfile.TemporaryDirectory(prefix="compressor-quant-") as tmpdir:
        tmp = Path(tmpdir)
        src = _without_initializer_shapes(src, tmp / "clean.onnx", details)
        pre = tmp / "preprocessed.onnx"
        details.update({"preprocess": "done before"} if skip_preprocess else preprocess(src, pre))
        model_in = pre if details["preprocess"] not in ("none", "done before") else src
        graph = onnx.load(str(model_in), load_external_data=False).graph
        src_graph = onnx.load(str(src), load_external_data=False).graph
        names = [i.name for i in graph.input]
        check_node_names(cfg.nodes_to_exclude, {n.name for n in graph.node} | {n.name for n in src_graph.node})
        ort_exclude = _with_rewritten_gemms(exclude, [graph, src_graph]) if cfg.mode == "dynamic" else exclude
        feeds = _stat_feeds(cfg, calibration, names)
        # techniques after ORT (weight rounding, bias correction) rewrite the quantized model: make it
        # in the temporary folder, publish after
        out = tmp / "quantized.onnx" if rewrites else dst

        def attempt(fp32: Path) -> Path:
            """Quantize ``fp32`` (FP32 rewrites first, when asked) into ``out``; returns the FP32 model quantized."""
            for t in fp32_rewrites:
                fp32 = _rewritten(t, cfg, fp32, tmp / f"{t.name}-{fp32.stem}.onnx", feeds, details)
            _quantize(fp32, out, cfg, calibration, names, ort_exclude, progress, calibration_cache,
                      weight_overrides)
            return fp32

        try:
            quantized_from = attempt(model_in)
        except (StepError, DataError):
            raise
        except Exception as e:  # noqa: BLE001
            if model_in == src:
                raise StepError(f"ONNX Runtime quantization failed: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from e
            # a partially pre-processed transformer graph can carry stale shapes that ORT's
            # own shape inference rejects: quantize the exported model as it is, and say so
            details.update(preprocess="none", preprocess_note=f"quantizing the pre-processed model failed "
                           f"({type(e).__name__}: {str(e)[:160]}); quantized the exported model instead")
            try:
                quantized_from = attempt(src)
            except (StepError, DataError):
                raise
            except Exception as e2:  # noqa: BLE001
                raise StepError(f"ONNX Runtime quantization failed: {type(e2).__name__}: "
                                f"{str(e2).splitlines()[0] if str(e2) else ''}") from e2
        for t in rewrites:  # phase order: weight rounding before bias correction, which reads the new weights
            details.update(t.apply(cfg, Models(fp32=quantized_from, out=out, feeds=feeds)))
        if rewrites:
            with atomic_path(dst) as final:
                shutil.copyfile(out, final)
    details.update({
        "calibration": cfg.calibration if cfg.mode == "static" else None,
        "calibration_samples": len(calibration) if (cfg.mode == "static" and calibration is not None) else 0,
        "moving_average": cfg.moving_average, "calibration_batch_size": cfg.calibration_batch_size,
        **({"calibration_batch_size_used": calibration_batch_size(cfg, len(calibration))}
           if cfg.mode == "static" and calibration is not None
           and calibration_batch_size(cfg, len(calibration)) != cfg.calibration_batch_size else {}),
        "per_channel": cfg.per_channel, "activation_type": cfg.activation_type if cfg.mode == "static" else "dynamic",
        "weight_type": cfg.weight_type, "reduce_range": cfg.reduce_range,
        **{k: v for t in techniques() for k, v in t.summary(cfg).items()},
        "nodes_excluded": exclude, "format": "QDQ" if cfg.mode == "static" else "QOperator",
    })
    return details
