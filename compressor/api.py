"""The public Python API: what the ``compressor`` command does, for CI scripts and notebooks.

The CLI calls these functions and only adds printing and exit codes. ``compressor.run`` and
``compressor.check`` are these two; ``bench`` is ``compressor.api.bench`` (``compressor.bench``
is the measurement package). Errors are :mod:`compressor.errors` types (``exit_code`` 2
for bad input), as on the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.errors import RecipeError
from compressor.progress import QUIET, Reporter
from compressor.recipe import Recipe, load_recipe
from compressor.recipe.schema import BenchmarkSpec
from compressor.report.check import CheckResult, check_report
from compressor.report.model import Report, load_report

__all__ = ["CheckResult", "Report", "bench", "check", "run", "sweep"]


def run(recipe: str | Path | Recipe, *, out: str | Path | None = None, resume: bool = False,
        progress: bool | Reporter = False, base_dir: str | Path | None = None) -> Report:
    """Run a recipe (a YAML file, or a :class:`Recipe`) end to end, like ``compressor run``.

    Writes the artifacts, ``report.json``, ``report.md`` and ``report.html`` into ``out``
    (default ``runs/<name>-<timestamp>``) and returns the report. ``resume`` continues an
    interrupted run in ``out``. Relative paths in the recipe resolve against the YAML file's
    folder, or ``base_dir`` for a :class:`Recipe` object (default: the working directory).
    A failed target or gate is in the report (``check`` judges it), not an exception.
    """
    from compressor.pipeline import default_run_dir, run_recipe

    recipe_path = None
    if not isinstance(recipe, Recipe):
        recipe_path = Path(recipe)
        recipe = load_recipe(recipe_path)
    if resume and out is None:
        raise RecipeError("resume needs out: the folder of the interrupted run")
    reporter = progress if isinstance(progress, Reporter) else Reporter(enabled=True) if progress else QUIET
    report = run_recipe(recipe, recipe_path=recipe_path, run_dir=Path(out) if out else default_run_dir(recipe),
                        progress=reporter, resume=resume, base_dir=Path(base_dir) if base_dir else None)
    assert report is not None  # only prepare_only (the sweep's first task) returns None
    return report


def check(report: Report | str | Path, *, baseline: Report | str | Path | None = None,
          **limits: float | None) -> CheckResult:
    """Evaluate CI gates over a report, like ``compressor check``; never prints.

    ``limits`` are gate limits by name: the keys of a recipe's ``gates:`` (``max_accuracy_drop``,
    ``min_speedup``, ``max_latency_increase``, ``max_size_bytes``, ``max_perplexity_increase_pct``,
    ``min_decode_tokens_per_s``; compressor.report.gates.GATE_NAMES) and the latency noise
    settings ``latency_tolerance``, ``latency_floor``; each given one overrides the recipe's
    gate recorded in the report. ``baseline`` is a previous report, for
    ``max_latency_increase``. Returns the verdict: ``.passed``, ``.gates``, ``.exit_code``.
    """
    from compressor.report.gates import GateLimits

    known = GateLimits.__dataclass_fields__
    unknown = sorted(set(limits) - set(known))
    if unknown:
        raise TypeError(f"check() got unknown gate limit(s) {unknown}; known: {', '.join(known)}")
    source = str(report) if not isinstance(report, Report) else f"report of {report.recipe!r}"
    rep = report if isinstance(report, Report) else load_report(Path(report))
    prev = baseline if isinstance(baseline, Report) or baseline is None else load_report(Path(baseline))
    return check_report(rep, baseline=prev, source=source, **limits)


def bench(model: str | Path, target: str = "onnxruntime-cpu", *, data: str | None = None, split: str = "test",
          samples: int | None = None, metric: str = "top1", input_shape: list[int] | None = None,
          benchmark: BenchmarkSpec | dict[str, Any] | None = None, precision: str | None = None,
          out: str | Path | None = None, emulate_arm64: str | None = None) -> Report:
    """Benchmark one artifact on one target, like ``compressor bench`` (needs no torch).

    ``data``: fashion-mnist, digits or an ``.npz`` file (None: latency only, on zeros);
    ``benchmark``: a recipe's ``benchmark:`` settings (defaults when None); ``out``: write
    the report there as JSON; ``emulate_arm64``: a qemu arm64 CPU model (``cortex-a76``): the
    accuracy comes from ONNX Runtime's aarch64 build under qemu (``make arm64-env``), no latency.
    """
    from compressor.bench.emulate import emulated_cpu
    from compressor.bench.standalone import bench_file

    spec = benchmark if isinstance(benchmark, BenchmarkSpec) else BenchmarkSpec.model_validate(benchmark or {})
    return bench_file(Path(model), target, data_source=data, split=split, samples=samples, metric=metric,
                      input_shape=input_shape, bench=spec, precision=precision, out=Path(out) if out else None,
                      # emulated_cpu: set when this process runs under qemu (--emulate-cpu)
                      emulated_cpu=emulated_cpu(), emulate_arm64=emulate_arm64)


def sweep(recipe: str | Path | Recipe, grid: list[str] | None = None, *, out: str | Path, resume: bool = False,
          ray_address: str | None = None, num_cpus: int | None = None, max_retries: int = 2,
          base_dir: str | Path | None = None, log: Callable[[str], None] | None = None,
          search: str | None = None, space: list[str] | None = None, trials: int = 12,
          objectives: tuple[str, ...] = ("accuracy", "latency"), devices: str | None = None,
          parallel: int | None = None) -> Report:
    """Run variants of a recipe on Ray, like ``compressor sweep``; returns the merged report.

    ``grid``: ``PATH=V1,V2`` strings (``steps[0].prune.ratio=0.3,0.5``), multiplied. Each
    variant is a complete run in ``out/variants/<name>``; ``out/report.json`` merges them with
    the Pareto front and the best variant (``report.sweep``). ``ray_address``: ``HOST:PORT``
    or ``auto`` to join a cluster (default: an in-process local Ray with ``num_cpus`` CPUs).
    ``search="optuna"``: instead of a grid, ``trials`` trials of a multi-objective Optuna study
    over ``space`` (``PATH=float:LO:HI``, ``PATH=int:LO:HI``, ``PATH=V1,V2``), stored in
    ``out/study.journal``. ``devices``: ``all`` or ``LABEL,...``: every variant on one node of
    each device kind, one Pareto front per device. A bad path or value raises RecipeError
    before anything runs.

        >>> sweep("recipes/prune_distill_int8.yaml", search="optuna", trials=12, out="runs/s",
        ...       space=["steps[0].prune.ratio=float:0.2:0.8"])        # doctest: +SKIP
    """
    from compressor.sweep import SearchOptions, SweepOptions, parse_axis, parse_dimension, run_search, run_sweep

    if search not in (None, "optuna"):
        raise RecipeError(f"--search {search!r}: the only search is optuna")
    if (search is None) == (not grid) or bool(space) != (search is not None):
        raise RecipeError("give --grid options, or --search optuna with --space options",
                          hint="e.g. --search optuna --space 'steps[0].prune.ratio=float:0.2:0.8' --trials 12")
    axes = [parse_axis(g) for g in grid or []]
    dims = [parse_dimension(d) for d in space or []]
    if not isinstance(recipe, Recipe):
        base_dir = base_dir or Path(recipe).resolve().parent
        recipe = load_recipe(Path(recipe))
    options = SweepOptions(ray_address, num_cpus, max_retries, devices)
    where = Path(base_dir) if base_dir else None
    if search:
        return run_search(recipe, dims, Path(out), base_dir=where, resume=resume, options=options,
                          search=SearchOptions(trials, tuple(objectives), parallel), log=log or (lambda _: None))
    return run_sweep(recipe, axes, Path(out), base_dir=where, resume=resume, options=options,
                     log=log or (lambda _: None))
