"""The sweep driver: variants as Ray tasks, resumable, merged into one report.

Each variant is two tasks: ``prepare`` (the steps; 1 CPU) and ``benchmark`` (every
target; the ``bench`` custom resource, so latency is never measured beside training or
calibration on the same cores). Locally ``ray.init`` starts an in-process Ray with one
``bench`` slot, so benchmarks run one at a time; on a cluster, nodes started with
``--resources '{"bench": 1}'`` measure. Tasks are retried when their worker dies
(``max_retries``); each variant's report.json marks it finished, so ``--resume`` after a
killed driver redoes no finished variant and a retry never adds a row twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError, RecipeError
from compressor.recipe.schema import Recipe
from compressor.report.model import Report
from compressor.sweep import tasks
from compressor.sweep.grid import Axis, Variant, expand
from compressor.sweep.merge import merge_sweep
from compressor.utils.io import atomic_write_json

MANIFEST = "sweep.json"
BENCH_RESOURCE = "bench"


@dataclass
class SweepOptions:
    """How the sweep runs: where Ray is, how many CPUs a local Ray gets, retries."""

    ray_address: str | None = None  # None: start an in-process local Ray
    num_cpus: int | None = None  # local Ray: CPUs for prepare tasks (default: cores minus the benchmark's threads)
    max_retries: int = 2  # re-runs of a task whose worker or node died


def run_sweep(recipe: Recipe, axes: list[Axis], out: Path, *, base_dir: Path | None, resume: bool = False,
              options: SweepOptions | None = None, log: Callable[[str], None] = lambda _: None) -> Report:
    """Run every variant of ``recipe`` along ``axes`` into ``out/variants/<name>`` and merge them
    into ``out/report.json`` (+ .md/.html). Raises RecipeError before anything runs when an
    axis or a variant is bad."""
    options = options or SweepOptions()
    variants = expand(recipe, axes)  # validates every variant first
    manifest = _check_manifest(out, recipe, axes, variants, resume)
    todo = [v for v in variants if not _finished(out, v)]
    if len(todo) < len(variants):
        log(f"{len(variants) - len(todo)} of {len(variants)} variant(s) finished before: not redone")
    outcomes: dict[str, dict[str, Any]] = {}
    if todo:
        outcomes = _run_on_ray(recipe, todo, out, base_dir, options, log,
                               on_ready=lambda: atomic_write_json(out / MANIFEST, manifest))
    return merge_sweep(recipe, variants, out, outcomes)


def _finished(out: Path, v: Variant) -> bool:
    return (out / "variants" / v.name / "report.json").is_file()


def _check_manifest(out: Path, recipe: Recipe, axes: list[Axis], variants: list[Variant],
                    resume: bool) -> dict[str, Any]:
    """The sweep's manifest; refuses a folder holding another sweep (written once Ray is up)."""
    manifest = {"recipe": recipe.name, "grid": [a.text + "=" + ",".join(json.dumps(x) for x in a.values) for a in axes],
                "variants": {v.name: v.settings for v in variants}}
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if not resume:
            raise RecipeError(f"{out} already holds a sweep", hint="use --resume to continue it, or another --out")
        if old != manifest:
            raise RecipeError(f"{out} holds a sweep of other variants ({', '.join(old.get('grid', []))})",
                              hint="resume with the same recipe and --grid options, or use another --out")
    elif resume:
        raise RecipeError(f"--resume: {out} holds no sweep ({MANIFEST} is missing)")
    return manifest


def _init_ray(recipe: Recipe, options: SweepOptions) -> bool:
    """Connect to (or start) Ray; True when this call started it (so it shuts it down)."""
    import ray

    if ray.is_initialized():  # a caller (a notebook, a test) already connected
        return False
    try:
        if options.ray_address:
            ray.init(address=options.ray_address, log_to_driver=False)
        else:  # address="local": always a new in-process Ray, never a cluster a former `ray start` left recorded
            cpus = options.num_cpus or max(1, (os.cpu_count() or 1) - recipe.benchmark.threads)
            ray.init(address="local", num_cpus=cpus, resources={BENCH_RESOURCE: 1}, include_dashboard=False,
                     log_to_driver=False, _node_ip_address="127.0.0.1")
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = options.ray_address or "a local Ray"
        raise CompressorError(f"cannot start or join {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                              hint="check --ray-address (HOST:PORT of the head, or auto) and `ray status`") from None
    if ray.cluster_resources().get(BENCH_RESOURCE, 0) < 1:
        ray.shutdown()
        raise CompressorError(f"no Ray node offers the {BENCH_RESOURCE!r} resource, so no variant can be benchmarked",
                              hint="start the benchmarking nodes with: ray start ... --resources '{\"bench\": 1}'")
    return True


def _run_on_ray(recipe: Recipe, todo: list[Variant], out: Path, base_dir: Path | None, options: SweepOptions,
                log: Callable[[str], None], on_ready: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    import ray

    started = _init_ray(recipe, options)
    try:
        on_ready()
        prepare = ray.remote(num_cpus=1, max_retries=options.max_retries)(tasks.prepare)
        bench = ray.remote(num_cpus=0, resources={BENCH_RESOURCE: 1}, max_retries=options.max_retries)(tasks.benchmark)
        shared = str((out / "stepcache").resolve())
        pending = {}
        for v in todo:
            spec = v.recipe.model_dump(mode="json", exclude_unset=True)  # keeps which settings the recipe set
            run_dir = str((out / "variants" / v.name).resolve())
            base = str(base_dir.resolve()) if base_dir else None
            cwd = os.getcwd()  # relative recipe paths resolve against it first, as in `compressor run`
            ref = bench.remote(prepare.remote(spec, run_dir, base, shared, cwd), spec, run_dir, base, cwd)
            pending[ref] = v.name
        outcomes: dict[str, dict[str, Any]] = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                outcomes[name] = ray.get(done[0])
            except Exception as e:  # the task's worker or node died more often than max_retries
                outcomes[name] = {"status": "failed", "phase": "ray", "error": f"{type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else ''}"}
            o = outcomes[name]
            log(f"{name}: {o['status']}" + (f" ({o.get('phase')}: {o.get('error')})" if o["status"] != "ok" else
                                              f" (measured on {o.get('host')})"))
        return outcomes
    finally:
        if started:
            ray.shutdown()
