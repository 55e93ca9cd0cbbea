"""The sweep driver: variants as Ray tasks, resumable, merged into one report.

Each variant is two tasks: ``prepare`` (the steps; 1 CPU) and ``benchmark`` (every
target; the ``bench`` custom resource, so latency is never measured beside training or
calibration on the same cores). Locally ``ray.init`` starts an in-process Ray with one
``bench`` slot, so benchmarks run one at a time; on a cluster, nodes started with
``--resources '{"bench": 1}'`` measure (``compressor sweep-node`` adds the node's device,
for ``--devices``). Tasks are retried when their worker dies (``max_retries``); each
variant's report.json marks it finished, so ``--resume`` after a killed driver redoes no
finished variant and a retry never adds a row twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compressor.errors import RecipeError
from compressor.recipe.schema import Recipe
from compressor.report.model import Report
from compressor.sweep.grid import Axis, expand
from compressor.sweep.merge import merge_sweep
from compressor.sweep.pool import RayPool, SweepOptions, Unit, finished, resolve_devices, units_of
from compressor.utils.io import atomic_write_json

MANIFEST = "sweep.json"
__all__ = ["MANIFEST", "SweepOptions", "check_manifest", "run_sweep"]


def run_sweep(recipe: Recipe, axes: list[Axis], out: Path, *, base_dir: Path | None, resume: bool = False,
              options: SweepOptions | None = None, log: Callable[[str], None] = lambda _: None) -> Report:
    """Run every variant of ``recipe`` along ``axes`` into ``out/variants/<name>`` (with
    ``options.devices``: ``<name>/<device>``, on a node of each device) and merge them into
    ``out/report.json`` (+ .md/.html). Raises RecipeError before anything runs when an axis
    or a variant is bad."""
    options = options or SweepOptions()
    variants = expand(recipe, axes)  # validates every variant first
    manifest = {"recipe": recipe.name, "grid": [a.text + "=" + ",".join(json.dumps(x) for x in a.values) for a in axes],
                "variants": {v.name: v.settings for v in variants}}
    if options.devices is not None:
        manifest["devices"] = options.devices
    old = check_manifest(out, manifest, resume)
    recorded = old.get("device_list") if old else None
    units: list[Unit] = []
    outcomes: dict[str, dict[str, Any]] = {}
    if options.devices is None or recorded is not None:
        units = [u for v in variants for u in units_of(v, recorded, base_dir)]
    todo = [u for u in units if not finished(out, u)]
    if units and len(todo) < len(units):
        log(f"{len(units) - len(todo)} of {len(units)} variant(s) finished before: not redone")
    if todo or not units:
        with RayPool(recipe, out, base_dir, options, log) as pool:
            devices = resolve_devices(pool, options.devices, recorded)
            if not units:
                units = [u for v in variants for u in units_of(v, devices, base_dir)]
                todo = [u for u in units if not finished(out, u)]
            atomic_write_json(out / MANIFEST, {**manifest, **({"device_list": devices} if devices else {})})
            for u in todo:
                pool.submit(u)
            while pool.pending:
                unit, outcomes[unit.name] = pool.wait_one()
    return merge_sweep(recipe, units, out, outcomes)


def check_manifest(out: Path, manifest: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """The manifest a resumed sweep recorded (None for a new one); refuses a folder holding
    another sweep. The new manifest is written once Ray is up."""
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if not resume:
            raise RecipeError(f"{out} already holds a sweep", hint="use --resume to continue it, or another --out")
        if {k: v for k, v in old.items() if k != "device_list"} != manifest:
            what = ", ".join(old.get("grid") or old.get("space") or [])
            raise RecipeError(f"{out} holds a sweep of other variants ({what})",
                              hint="resume with the same recipe and --grid/--space/--devices options, or use another --out")
        return old
    if resume:
        raise RecipeError(f"--resume: {out} holds no sweep ({MANIFEST} is missing)")
    return None
