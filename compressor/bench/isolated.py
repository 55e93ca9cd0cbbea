"""Compile + benchmark one (variant, target) job, optionally in a child process.

Runtimes are native code: one that segfaults, aborts or hangs must not take the run
with it. :func:`run_isolated` runs :func:`run_job` in a ``spawn`` child (a fresh
interpreter: forking a process whose torch/OpenMP threads are running can deadlock)
with a time limit, and turns a crash or timeout into a :class:`TargetFailed` naming
the signal or the limit. The job holds only plain data and paths (no torch model,
no callables), so the child never needs torch: torch-consuming targets compile in
the parent and hand the child the compiled artifact.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, TargetFailed
from compressor.recipe.schema import BenchmarkSpec
from compressor.targets.base import Artifact, ModelArtifact
from compressor.targets.spec import TargetSpec
from compressor.utils.io import atomic_write_json

Progress = Callable[[str, int, int], None]


@dataclass
class TargetJob:
    """Everything one (variant, target) benchmark needs, as picklable plain data."""

    runtime: str  # "module:Class" of the Target subclass (resolved by the parent)
    spec: TargetSpec
    variant: str
    precision: str  # the variant's precision (fp32 / int8)
    out_dir: Path
    run_dir: Path
    eval_data: Dataset
    reference: list[np.ndarray] | None
    metric: str
    threads: int
    bench: BenchmarkSpec  # warmup, iterations, min_duration_s, batch_size, eval_batch_size
    model: ModelArtifact | None = None  # compile this in the job ...
    artifact: Artifact | None = None  # ... or run this already compiled artifact
    meta: dict[str, Any] = field(default_factory=dict)
    extra_metrics: list[str] = field(default_factory=list)  # reported beside `metric`


def _target(job: TargetJob):
    import importlib

    module, _, cls = job.runtime.partition(":")
    return getattr(importlib.import_module(module), cls)(job.spec)


def run_job(job: TargetJob, progress: Progress | None = None) -> dict[str, Any]:
    """Compile (when needed), load and benchmark; returns the result row's measured fields."""
    from compressor.bench.runner import benchmark_session

    target = _target(job)
    precision = target.precision_for(job.precision)
    artifact = job.artifact
    if artifact is None:
        assert job.model is not None
        artifact = target.compile(job.model, job.out_dir, precision=job.precision)
    session = target.load(artifact, threads=job.threads)
    measured = benchmark_session(
        session, eval_data=job.eval_data, metric=job.metric, reference=job.reference, precision=precision,
        bench=job.bench, max_batch=target.max_batch, progress=progress, extra_metrics=job.extra_metrics,
    )
    from compressor.bench.artifacts import write_artifact_record

    # what loading the artifact again needs (the run's paired timing step loads it beside the baseline)
    write_artifact_record(artifact, Path(f"{artifact.path}.artifact.json"), job.run_dir)
    samples_path = job.out_dir / f"{job.variant}.latency.json"
    atomic_write_json(samples_path, measured.pop("latency_samples_ms"))
    measured.update(precision=precision, size_bytes=artifact.size_bytes, device=target.describe(),
                    artifact=str(artifact.path.relative_to(job.run_dir)),
                    latency_samples=str(samples_path.relative_to(job.run_dir)))
    return measured


def _child_main(conn: Any, job: Any, fn: Callable[[Any, Progress | None], dict[str, Any]] = run_job) -> None:
    """Child entry point: send ("progress", ...) messages, then ("ok", fn(job)) or ("failed", msg)."""
    last = [0.0]

    def progress(stage: str, k: int, n: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.2 or k >= n:  # throttled: the latency loop calls this every run
            last[0] = now
            conn.send(("progress", stage, k, n))

    import warnings

    # library deprecation chatter from a child would interleave with the parent's progress
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        # a job with its own ``execute`` (e.g. bench.llm_job.LlmJob) runs that instead of ``fn``
        execute = getattr(job, "execute", None)
        conn.send(("ok", execute(progress) if execute else fn(job, progress)))
    except CompressorError as e:
        conn.send(("failed", str(e)))
    except Exception as e:  # noqa: BLE001 - anything a runtime raises is that target's failure
        conn.send(("failed", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
    finally:
        conn.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"crashed with signal {-code} ({name})"
    return f"exited with code {code} without a result"


def run_isolated(job: Any, *, timeout_s: float, progress: Progress | None = None,
                 fn: Callable[[Any, Progress | None], dict[str, Any]] = run_job) -> dict[str, Any]:
    """``fn(job)`` (default :func:`run_job`) in a spawned child; a crash, hang or error
    raises TargetFailed. ``job`` is plain data with ``spec`` and ``variant``; ``fn`` a
    module-level function (the child imports it by name)."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, job, fn), name=f"compressor-{job.spec.name}", daemon=True)
    proc.start()
    send.close()  # the parent keeps only the reading end, so EOF means the child is gone
    deadline = time.monotonic() + timeout_s
    outcome: tuple | None = None
    try:
        while outcome is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TargetFailed(f"{job.spec.name} timed out after {timeout_s:g} s (compile + benchmark of "
                                   f"{job.variant})", hint="raise benchmark.timeout_s, or check the runtime")
            if not recv.poll(min(left, 0.5)):
                continue
            try:
                msg = recv.recv()
            except EOFError:
                break  # the child died without a result
            if msg[0] == "progress":
                if progress is not None:
                    progress(msg[1], msg[2], msg[3])
            else:
                outcome = msg
    finally:
        recv.close()
        if outcome is None and proc.is_alive():
            proc.kill()
        proc.join(10)
    if outcome is None:
        raise TargetFailed(f"{job.spec.name} runtime {_describe_exit(proc.exitcode)} while benchmarking "
                           f"{job.variant}", hint="run with benchmark.isolate: false and --debug to see where")
    if outcome[0] == "failed":
        raise TargetFailed(outcome[1])
    return outcome[1]
