"""One (variant, target) job: compile, load and benchmark, in a child process by default,
reusing a finished result on resume; and the FP32 reference every job compares with (a
decoder LLM's: its greedy continuations of the prompts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.context import RunContext
from compressor.data import Dataset
from compressor.errors import CompressorError, TargetFailed
from compressor.pipeline.plan import target_device
from compressor.pipeline.variants import Variant
from compressor.recipe.schema import Recipe
from compressor.report.model import Result
from compressor.stepcache import file_digest
from compressor.targets.base import ModelArtifact
from compressor.targets.devices import Device, detect_host
from compressor.targets.registry import make_target
from compressor.targets.spec import TargetSpec


def reference_outputs(baseline_onnx: Path | None, eval_data: Dataset, recipe: Recipe) -> list[np.ndarray] | None:
    from compressor.bench.runner import run_batches
    from compressor.targets.onnxruntime_cpu import OrtSession

    if baseline_onnx is None:
        return None
    session = OrtSession(baseline_onnx, recipe.benchmark.threads, {})
    return run_batches(session, eval_data, recipe.benchmark.eval_batch_size)


def agreement_noise_floor(baseline_onnx: Path | None, eval_data: Dataset, recipe: Recipe,
                          reference: list[np.ndarray] | None) -> dict[str, Any] | None:
    """FP32 against itself under +-1 LSB of input noise on the evaluation data
    (:mod:`compressor.steps.quantize.noise`), when ``data.metric`` is scored against the FP32
    model (top1_agreement, cosine): the floor under every agreement figure of the run."""
    from compressor.bench.runner import run_batches
    from compressor.metrics import metric_info
    from compressor.steps.quantize.noise import noise_floor, perturb
    from compressor.targets.onnxruntime_cpu import OrtSession

    metric = recipe.data.metric
    if baseline_onnx is None or reference is None or metric_info(metric).needs_labels or metric == "perplexity":
        return None
    shaken, how = perturb(eval_data, seed=recipe.seed)
    out = run_batches(OrtSession(baseline_onnx, recipe.benchmark.threads, {}), shaken, recipe.benchmark.eval_batch_size)
    return noise_floor(metric, reference[0], out[0], how).to_dict()


def reference_continuations(baseline: Path, ctx: RunContext) -> list[np.ndarray]:
    """A decoder LLM's FP32 greedy continuation of each prompt (next-token agreement compares with them)."""
    from compressor.bench.llm import Decoder, greedy
    from compressor.targets.onnxruntime_cpu import OrtSession

    dec = Decoder(OrtSession(baseline, ctx.recipe.benchmark.threads, {}), ctx.decoder.cache_shape)
    return [greedy(dec, p, ctx.recipe.data.text.continuation_tokens) for p in ctx.decoder.text.prompts]


def bench_cached(spec: TargetSpec, v: Variant, ctx: RunContext, eval_data: Dataset | None,
                  reference: list[np.ndarray] | None) -> Result:
    """:func:`bench_variant` (:func:`bench_decoder` for decoder LLMs), reusing a finished
    result of the same model/target/settings on resume."""
    assert ctx.cache is not None
    if v.error is not None:
        return Result(variant=v.name, target=spec.name, precision=v.precision, status="failed", error=v.error)
    what = f"bench:{v.name}:{spec.name}"
    key = ctx.cache.key("bench", variant=v.name, precision=v.precision, model=file_digest(v.onnx_path),
                        reference=file_digest(v.parity_reference.onnx_path), target=spec.model_dump(mode="json"), benchmark=ctx.recipe.benchmark.model_dump(mode="json"),
                        data=ctx.recipe.data.model_dump(mode="json"), seed=ctx.seed)
    rec = ctx.cache.get(what, key)
    if rec is not None:
        ctx.progress.log(f"[bold]reused[/] {v.name} on {spec.name} (finished before the interruption)")
        return Result.model_validate(rec["data"]["result"])
    result = (bench_decoder(spec, v, ctx, reference) if ctx.decoder is not None
              else bench_variant(spec, v, ctx, eval_data, reference))  # type: ignore[arg-type]
    if result.status == "ok":  # failures (crash, timeout) are retried on resume
        files = [ctx.run_dir / result.artifact] if result.artifact and (ctx.run_dir / result.artifact).is_file() else []
        ctx.cache.put(what, key, {"result": result.model_dump(mode="json", exclude_none=True)}, files)
    return result


def _usable_target(spec: TargetSpec, ctx: RunContext) -> tuple[Any, Path]:
    """The target of ``spec`` (TargetFailed when its runtime is unusable here) and its artifacts folder."""
    target = make_target(spec)
    reason = target.unavailable_reason()
    if reason:
        raise TargetFailed(f"unavailable: {reason}")
    out_dir = ctx.artifacts_dir / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    return target, out_dir


def bench_variant(spec: TargetSpec, v: Variant, ctx: RunContext, eval_data: Dataset,
                  reference: list[np.ndarray] | None) -> Result:
    """Compile, load and benchmark one variant on one target. A failure of the target
    (an error, a crash or a hang of its runtime) is recorded in the result; the run
    goes on with the other targets. With ``benchmark.isolate`` (default) the runtime
    part runs in a child process limited to ``benchmark.timeout_s``."""
    from compressor.bench.emulate import rescore_on_device
    from compressor.bench.isolated import TargetJob, run_isolated, run_job
    from compressor.targets.registry import RUNTIMES

    b = ctx.recipe.benchmark
    row: dict[str, Any] = {"variant": v.name, "target": spec.name, "precision": v.precision}
    try:
        target, out_dir = _usable_target(spec, ctx)
        row["precision"] = target.precision_for(v.precision)
        model = ModelArtifact(v.name, v.precision, v.onnx_path, [], v.torch_model,
                              meta={"calibration": ctx.calibration_data, "seed": ctx.seed})
        artifact = None
        if target.consumes == "torch":
            # torch stays in this process: the child gets the compiled artifact
            with ctx.progress.task(f"compiling {v.name} for {spec.name}"):
                artifact = target.compile(model, out_dir, precision=v.precision)
        job = TargetJob(
            runtime=RUNTIMES[spec.runtime], spec=spec, variant=v.name, precision=v.precision, out_dir=out_dir,
            run_dir=ctx.run_dir, eval_data=eval_data, reference=reference, metric=ctx.recipe.data.metric,
            threads=spec.threads or b.threads, extra_metrics=list(ctx.recipe.data.metrics),
            bench=b,
            model=None if artifact else ModelArtifact(v.name, v.precision, v.onnx_path, [], None,
                                                      meta={"seed": ctx.seed}),
            artifact=artifact,
        )
        with ctx.progress.task(f"benchmarking {v.name} on {spec.name}") as update:
            def progress(stage: str, k: int, n: int) -> None:
                update(k, n, stage)

            measured = (run_isolated(job, timeout_s=b.timeout_s, progress=progress) if b.isolate
                        else run_job(job, progress))
        emulated: dict[str, Any] = {}
        cpu = target.accuracy_emulation(v.precision)
        if cpu and measured.get("artifact"):  # e.g. ort-mobile INT8: the arm64 phone's kernels, under qemu
            with ctx.progress.task(f"scoring {v.name} on {spec.name}'s kernels (emulated {cpu})"):
                emulated = rescore_on_device(
                    target, ctx.run_dir / measured["artifact"], v.precision, measured, eval_data,
                    metric=ctx.recipe.data.metric, threads=job.threads, reference=reference,
                    extra_metrics=job.extra_metrics, batch=b.eval_batch_for(target.max_batch), timeout_s=b.timeout_s)
        row.update(measured)
        row["device"] = {**(row.get("device") or {}), **emulated, **_device_record(spec, v, ctx)}
        # set by rescore_on_device where the accuracy came from the device's kernels under emulation
        row["accuracy_kernels"] = row.get("accuracy_kernels") or accuracy_kernels(target_device(spec), detect_host())
        note = row["device"].get("emulation_unavailable")
        if note:
            ctx.progress.log(f"[yellow]note:[/] {v.name} on {spec.name}: no arm64 emulation here: {note}")
        if row.get("parity"):
            row["parity"] = {**row["parity"], "reference": v.parity_reference.name}
    except CompressorError as e:
        row.update(status="failed", error=str(e))
        ctx.progress.log(f"[red]target {spec.name} failed for {v.name}:[/] {e}")
    return Result.model_validate(row)


def bench_decoder(spec: TargetSpec, v: Variant, ctx: RunContext, continuations: list[np.ndarray]) -> Result:
    """A decoder LLM on one target, in its own child process (its own peak RSS): perplexity,
    next-token agreement with FP32, prefill latency, decode tokens/s, memory, size."""
    from compressor.bench.isolated import run_isolated
    from compressor.bench.llm_job import LlmJob
    from compressor.targets.registry import RUNTIMES

    b, t, text = ctx.recipe.benchmark, ctx.recipe.data.text, ctx.decoder.text
    row: dict[str, Any] = {"variant": v.name, "target": spec.name, "precision": v.precision}
    try:
        _, out_dir = _usable_target(spec, ctx)
        note = ctx.decoder.note if v.made_from is None else ""
        job = LlmJob(runtime=RUNTIMES[spec.runtime], spec=spec, variant=v.name, precision=v.precision,
                     out_dir=out_dir, run_dir=ctx.run_dir, model=ModelArtifact(v.name, v.precision, v.onnx_path, []),
                     threads=spec.threads or b.threads, cache_shape=ctx.decoder.cache_shape, tokens=text.evaluation,
                     window=t.window, stride=t.stride, bos=text.bos, prompts=text.prompts,
                     continuations=continuations, timing=b.llm.model_dump(),
                     meta={**text.tokenization, **({"note": note} if note else {})})
        with ctx.progress.task(f"measuring {v.name} on {spec.name}") as update:
            row.update(run_isolated(job, timeout_s=b.timeout_s, progress=lambda s, k, n: update(k, n, s)))
    except CompressorError as e:
        row.update(status="failed", error=str(e))
        ctx.progress.log(f"[red]target {spec.name} failed for {v.name}:[/] {e}")
    return Result.model_validate(row)


def _device_record(spec: TargetSpec, v: Variant, ctx: RunContext) -> dict[str, Any]:
    """The device a result deploys to and, for quantized variants, the settings chosen for it."""
    out: dict[str, Any] = {"deploy": target_device(spec).describe()}
    choice = ctx.quant_choices.get(spec.name)
    if choice is not None and v.precision == "int8":
        out["quantization"] = choice.to_dict()
    return out


def accuracy_kernels(device: Device, host: Device) -> str:
    """Which kernels produced a result's accuracy: ``device`` (the deploy device is this host,
    or takes the same INT8 kernel path), else ``host`` (this host's kernels, not the device's)."""
    if device.is_gpu or device.source == "detected" or device.same_kernels(host):
        return "device"
    return "host"
