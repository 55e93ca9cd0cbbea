"""`compressor bench`: one artifact on one target, with no torch installed."""

from __future__ import annotations

import datetime as _dt
import tempfile
from pathlib import Path

from compressor.bench.environment import describe_environment
from compressor.bench.runner import benchmark_session
from compressor.data import Dataset, fit_to_shape, load_split
from compressor.errors import CompressorError, DataError, ModelLoadError
from compressor.recipe.schema import BenchmarkSpec
from compressor.report.model import Report, Result
from compressor.targets.base import ModelArtifact, timed_call
from compressor.targets.registry import make_target
from compressor.targets.spec import load_target
from compressor.utils.io import atomic_write_json

INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
            "DynamicQuantizeLinear"}


def detect_precision(path: Path) -> str:
    if path.suffix != ".onnx":
        return "unknown"
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise ModelLoadError(f"{path} is not a valid ONNX model") from None
    return "int8" if any(n.op_type in INT8_OPS for n in proto.graph.node) else "fp32"


def _synthetic(session, input_shape: list[int] | None) -> Dataset:
    """Latency-only data when no dataset is given: zeros of the model's input shapes
    (``--input-shape``, or the shapes a session reports, dynamic axes taken as 1)."""
    import numpy as np

    meta = {name: (shape, dtype) for name, shape, dtype in getattr(session, "input_meta", lambda: [])() or []}
    if input_shape is not None:
        if len(session.input_names) != 1:
            raise DataError(f"--input-shape describes one input; this model has {len(session.input_names)} "
                            f"({', '.join(session.input_names)})", hint="give --data with one array per input")
        name = session.input_names[0]
        return Dataset({name: np.zeros(input_shape, dtype=meta.get(name, (None, "float32"))[1])}, None, "synthetic")
    if not meta:
        raise DataError("give --data (or --input-shape) so the benchmark has inputs")
    inputs = {name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in shape], dtype=dtype)
              for name, (shape, dtype) in meta.items()}
    return Dataset(inputs, None, "synthetic")


def bench_file(model: Path, target_name: str, *, data_source: str | None, split: str = "test",
               samples: int | None = None, metric: str = "top1", input_shape: list[int] | None = None,
               bench: BenchmarkSpec | None = None, precision: str | None = None, out: Path | None = None,
               emulated_cpu: str | None = None) -> Report:
    """Benchmark one artifact with the settings of ``bench`` (a recipe's ``benchmark:``; its
    defaults when None). ``emulated_cpu``: this process runs under qemu with that CPU model,
    so the accuracy is that CPU's and no latency is kept (emulated time means nothing)."""
    bench = bench or BenchmarkSpec()
    if emulated_cpu:
        bench = bench.model_copy(update={"warmup": 0, "iterations": 1, "min_duration_s": 0.0})
    threads = bench.threads
    if not model.exists():
        raise ModelLoadError(f"model file {model} does not exist")
    spec = load_target(target_name)
    target = make_target(spec)
    reason = target.unavailable_reason()
    if reason:
        raise CompressorError(f"target {spec.name} is unavailable here: {reason}")
    if target.consumes != "onnx" and model.suffix == ".onnx":
        raise CompressorError(f"target {spec.name} runs {spec.runtime} artifacts, not ONNX files")
    if model.suffix == ".onnx":
        from compressor.models.onnx_input import load_onnx_checked

        load_onnx_checked(model)
    precision = precision or detect_precision(model)
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        artifact = target.compile(ModelArtifact("model", precision, model, []), Path(tmp), precision=precision)
        session = target.load(artifact, threads=threads)
        if data_source:
            src = {"npz": data_source} if data_source.endswith(".npz") else data_source
            data = fit_to_shape(load_split(src, split, samples), input_shape)
        else:
            data = _synthetic(session, input_shape)
            metric = None
        measured = benchmark_session(
            session, eval_data=data, metric=metric or "top1", reference=None, precision=precision, bench=bench,
            max_batch=target.max_batch,
        ) if metric else _latency_only(session, data, bench)
        samples = measured.pop("latency_samples_ms", None)
        size = model.stat().st_size
    row = Result(variant=model.stem, target=spec.name, precision=target.precision_for(precision), size_bytes=size,
                 artifact=str(model), device=target.describe(), **measured)
    if emulated_cpu:
        row.accuracy_kernels = "emulated"
        row.device = {**(row.device or {}), "emulated_cpu": emulated_cpu}
        row.latency_ms = row.throughput_per_s = None
        samples = None
    report = Report(recipe=f"bench:{model.name}", created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    environment=describe_environment(threads), results=[row])
    if out:
        if samples is not None:  # raw samples beside the report, for the latency-distribution plot
            samples_path = out.with_name(f"{out.stem}.latency.json")
            atomic_write_json(samples_path, samples)
            row.latency_samples = samples_path.name
        atomic_write_json(out, report.to_json())
    return report


def _latency_only(session, data: Dataset, bench: BenchmarkSpec) -> dict:
    from compressor.bench.latency import measure_latency

    feeds = data.first(bench.batch_size)
    stats, samples = measure_latency(timed_call(session, feeds), warmup=bench.warmup, iterations=bench.iterations,
                                     min_duration_s=bench.min_duration_s)
    return {"latency_ms": stats.to_dict(), "throughput_per_s": bench.batch_size * 1000.0 / stats.mean,
            "latency_samples_ms": samples.tolist()}
