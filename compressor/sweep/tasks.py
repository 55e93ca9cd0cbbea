"""What a Ray worker does for one variant: ``prepare`` runs the recipe's steps (training,
pruning, calibration) on any CPU worker; ``benchmark`` resumes the same run folder on a
worker holding the ``bench`` resource and measures every target there, baseline beside
compressed. Both are plain functions (the driver wraps them in ``ray.remote``) so they
also run without Ray. The run folder lives in the sweep's out dir, which every node reads.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError
from compressor.recipe.schema import Recipe
from compressor.sweep.nodes import host_profile
from compressor.utils.io import atomic_write_json

PREPARE_LOG = "sweep_prepare_log.json"  # the prepare phase's work log (the benchmark phase rewrites work_log.json)
ATTEMPTS = "sweep_attempts.jsonl"


def _node() -> dict[str, Any]:
    node: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        if ray.is_initialized():
            node["ray_node"] = ray.get_runtime_context().get_node_id()[:12]
    except ImportError:  # pragma: no cover - the driver needs ray to get here
        pass
    return node


def _attempt(run_dir: Path, phase: str) -> dict[str, Any]:
    """Append this attempt to the variant's log: a retried task shows as a second line."""
    node = _node()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ATTEMPTS, "a", encoding="utf-8") as f:
        f.write(json.dumps({"phase": phase, "time": time.time(), **node}) + "\n")
    return node


class _InFolder:
    """Run in the driver's working folder when this node has it (a shared file system), as
    `compressor run` resolves a recipe's relative paths against the working folder first.
    Ray reuses worker processes, so the previous folder is restored."""

    def __init__(self, folder: str | None):
        self.folder, self.old = folder, os.getcwd()

    def __enter__(self) -> None:
        if self.folder and Path(self.folder).is_dir():
            os.chdir(self.folder)

    def __exit__(self, *exc: object) -> None:
        os.chdir(self.old)


def prepare(recipe_json: dict[str, Any], run_dir: str, base_dir: str | None, shared_cache: str,
            cwd: str | None = None) -> dict[str, Any]:
    """Run the steps of one variant into ``run_dir`` (resuming whatever an earlier attempt
    finished, reusing what another variant put in ``shared_cache``)."""
    from compressor.pipeline import run_recipe

    rd = Path(run_dir)
    node = _attempt(rd, "prepare")
    try:
        with _InFolder(cwd):
            run_recipe(Recipe.model_validate(recipe_json), run_dir=rd, resume=True, prepare_only=True,
                       base_dir=Path(base_dir) if base_dir else None, shared_cache=Path(shared_cache))
    except CompressorError as e:  # a failed variant is a row of the report, not a failed sweep
        return {"status": "failed", "phase": "prepare", "error": str(e), **node}
    log = rd / "work_log.json"
    if log.is_file():
        (rd / PREPARE_LOG).write_bytes(log.read_bytes())
    return {"status": "ok", **node}


def benchmark(prepared: dict[str, Any], recipe_json: dict[str, Any], run_dir: str,
              base_dir: str | None, cwd: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Measure every target of one variant on this node and write its report.json (the
    variant's completion marker). Benchmark records of an earlier attempt are dropped first:
    all rows of a variant are measured by one attempt, on one node. ``device``: the label
    of the node the driver asked for (recorded beside the profile this node detects)."""
    from compressor.pipeline import run_recipe

    if prepared.get("status") != "ok":
        return prepared
    rd = Path(run_dir)
    node = _attempt(rd, "benchmark")
    node["device"] = device
    node["detected"] = host_profile()
    # which node measures: written before report.json (the completion marker), read by the merge
    atomic_write_json(rd / "sweep_node.json", node)
    for rec in (rd / "cache").glob("*.json"):
        try:
            if json.loads(rec.read_text(encoding="utf-8")).get("work", "").startswith("bench:"):
                rec.unlink()
        except (OSError, ValueError):
            rec.unlink(missing_ok=True)
    try:
        with _InFolder(cwd):
            report = run_recipe(Recipe.model_validate(recipe_json), run_dir=rd, resume=True,
                                base_dir=Path(base_dir) if base_dir else None)
    except CompressorError as e:
        return {"status": "failed", "phase": "benchmark", "error": str(e), **node}
    assert report is not None
    return {"status": "ok", **node}
