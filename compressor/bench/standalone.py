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
from compressor.targets.base import ModelArtifact, Target, timed_call
from compressor.targets.registry import make_target
from compressor.targets.spec import TargetSpec, load_target
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


def _usable_target(name: str) -> tuple[TargetSpec, Target]:
    spec = load_target(name)
    target = make_target(spec)
    reason = target.unavailable_reason()
    if reason:
        raise CompressorError(f"target {spec.name} is unavailable here: {reason}")
    return spec, target


def _check_model(model: Path, target: Target) -> None:
    """The file exists, fits the target, and (ONNX) passes the safe-loading checks."""
    if not model.exists():
        raise ModelLoadError(f"model file {model} does not exist")
    if target.consumes != "onnx" and model.suffix == ".onnx":
        raise CompressorError(f"target {target.spec.name} runs {target.spec.runtime} artifacts, not ONNX files")
    if model.suffix == ".onnx":
        from compressor.models.onnx_input import load_onnx_checked

        load_onnx_checked(model)


def bench_file(model: Path, target_name: str, *, data_source: str | None, split: str = "test",
               samples: int | None = None, metric: str = "top1", input_shape: list[int] | None = None,
               bench: BenchmarkSpec | None = None, precision: str | None = None, out: Path | None = None,
               emulated_cpu: str | None = None, emulate_arm64: str | None = None) -> Report:
    """Benchmark one artifact with the settings of ``bench`` (a recipe's ``benchmark:``; its
    defaults when None). ``emulated_cpu``: this process runs under qemu with that CPU model,
    so the accuracy is that CPU's and no latency is kept (emulated time means nothing).
    ``emulate_arm64``: a qemu arm64 CPU model; the accuracy comes from ONNX Runtime's aarch64
    build under qemu (:func:`compressor.bench.emulate.arm64_accuracy`), no latency is kept."""
    bench = bench or BenchmarkSpec()
    if emulate_arm64:
        if not data_source:
            raise DataError("arm64 emulation measures accuracy: give --data")
        emulated_cpu = emulate_arm64
    if emulated_cpu:
        bench = bench.model_copy(update={"warmup": 0, "iterations": 1, "min_duration_s": 0.0})
    threads = bench.threads
    spec, target = _usable_target(target_name)
    _check_model(model, target)
    precision = precision or detect_precision(model)
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        artifact = target.compile(ModelArtifact("model", precision, model, []), Path(tmp), precision=precision)
        if emulate_arm64:
            measured = _arm64_measure(target, artifact.path, data_source, split, samples, metric, input_shape,
                                      bench, precision, emulate_arm64)
        else:
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
    device = {**target.describe(), **measured.pop("device", {})}
    row = Result(variant=model.stem, target=spec.name, precision=target.precision_for(precision), size_bytes=size,
                 artifact=str(model), device=device, **measured)
    if emulated_cpu:
        row.accuracy_kernels = "emulated-arm64" if emulate_arm64 else "emulated"
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


def _arm64_measure(target: Target, artifact: Path, data_source: str, split: str, samples: int | None, metric: str,
                   input_shape: list[int] | None, bench: BenchmarkSpec, precision: str, cpu: str) -> dict:
    """Accuracy of the compiled ``artifact`` from ONNX Runtime's aarch64 build under qemu ``cpu``."""
    from compressor.bench.emulate import arm64_accuracy

    src = {"npz": data_source} if data_source.endswith(".npz") else data_source
    data = fit_to_shape(load_split(src, split, samples), input_shape)
    measured = arm64_accuracy(target, artifact, data, cpu=cpu, metric=metric, threads=bench.threads,
                              precision=precision, batch=bench.eval_batch_for(target.max_batch))
    measured.pop("accuracy_kernels")
    measured["device"] = {"emulation": measured.pop("emulation")}
    return measured


def bench_interleaved(models: list[Path], target_name: str, *, data_source: str | None = None,
                      split: str = "test", samples: int | None = None, input_shape: list[int] | None = None,
                      warmup: int = 50, rounds: int = 30, per_round: int = 10, batch_size: int = 1,
                      threads: int = 2, out: Path | None = None) -> Report:
    """Time ``models`` on one target in alternating rounds in this process (each round
    times every model ``per_round`` times); every model after the first gets ``paired``:
    its per-round speedup over the first (median, p10, p90). Latency only: the data
    gives the inputs, no accuracy is computed (run ``compressor bench`` per model for it).

    >>> bench_interleaved([Path("fp32.onnx"), Path("int8.onnx")], "onnxruntime-cpu")  # doctest: +SKIP
    """
    from compressor.bench.paired import paired_record, time_interleaved
    from compressor.report.model import PairedSpeedup

    if len(models) < 2:
        raise DataError("interleaved timing needs two or more models")
    spec, target = _usable_target(target_name)
    for m in models:
        _check_model(m, target)
    names = _unique_names(models)
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        sessions, precisions = {}, {}
        for name, model in zip(names, models):
            precisions[name] = detect_precision(model)
            folder = Path(tmp) / name
            folder.mkdir()
            artifact = target.compile(ModelArtifact(name, precisions[name], model, []), folder,
                                      precision=precisions[name])
            sessions[name] = target.load(artifact, threads=threads)
        first = next(iter(sessions.values()))
        if data_source:
            src = {"npz": data_source} if data_source.endswith(".npz") else data_source
            data = fit_to_shape(load_split(src, split, samples or batch_size), input_shape)
        else:
            data = _synthetic(first, input_shape)
        timing = time_interleaved(sessions, data, batch_size=batch_size, rounds=rounds, per_round=per_round,
                                  warmup=warmup)
    rows = []
    for i, (name, model) in enumerate(zip(names, models)):
        stats = timing.stats[name]
        rows.append(Result(
            variant=name, target=spec.name, precision=target.precision_for(precisions[name]),
            size_bytes=model.stat().st_size, artifact=str(model), device=target.describe(),
            latency_ms=stats.to_dict(), throughput_per_s=batch_size * 1000.0 / stats.mean if stats.mean else None,
            paired=None if i == 0 else PairedSpeedup.model_validate(
                paired_record(timing, name, rounds=rounds, per_round=per_round))))
    report = Report(recipe=f"bench:interleave:{','.join(m.name for m in models)}",
                    created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    environment=describe_environment(threads), results=rows)
    if out:
        atomic_write_json(out, report.to_json())
    return report


def _unique_names(models: list[Path]) -> list[str]:
    """File stems, made unique (a/model.onnx, b/model.onnx -> model, model-2)."""
    names: list[str] = []
    for m in models:
        name, k = m.stem, 2
        while name in names:
            name, k = f"{m.stem}-{k}", k + 1
        names.append(name)
    return names


def _latency_only(session, data: Dataset, bench: BenchmarkSpec) -> dict:
    from compressor.bench.latency import measure_latency

    feeds = data.first(bench.batch_size)
    stats, samples = measure_latency(timed_call(session, feeds), warmup=bench.warmup, iterations=bench.iterations,
                                     min_duration_s=bench.min_duration_s)
    return {"latency_ms": stats.to_dict(), "throughput_per_s": bench.batch_size * 1000.0 / stats.mean,
            "latency_samples_ms": samples.tolist()}
