"""Ray for a sweep: start or join it, submit a variant's prepare -> benchmark tasks, and
hand back each outcome as it finishes (the grid submits all at once, a search a few at a
time as its sampler asks for them).

A *unit* is one variant measured on one device: ``variants/<variant>`` without
``--devices``, ``variants/<variant>/<device>`` with them. A unit for a device profile
(``x86-64-avx2``) runs the recipe compiled for that device (its host targets declare it,
so the quantization defaults follow the device, as on the device itself).

    >>> with RayPool(recipe, out, base_dir, SweepOptions()) as pool:   # doctest: +SKIP
    ...     pool.submit(unit); unit, outcome = pool.wait_one()
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError
from compressor.recipe.schema import Recipe
from compressor.sweep import nodes, tasks
from compressor.sweep.grid import Variant
from compressor.targets.devices import PROFILES


@dataclass
class SweepOptions:
    """How the sweep runs: where Ray is, how many CPUs a local Ray gets, retries, devices."""

    ray_address: str | None = None  # None: start an in-process local Ray
    num_cpus: int | None = None  # local Ray: CPUs for prepare tasks (default: cores minus the benchmark's threads)
    max_retries: int = 2  # re-runs of a task whose worker or node died
    devices: str | None = None  # None: any bench node; "all" or "LABEL,LABEL": every variant on each device


@dataclass(frozen=True)
class Unit:
    """One variant on one device (None: on whichever bench node is free)."""

    variant: Variant
    device: str | None
    recipe: Recipe  # the variant's recipe, compiled for ``device`` where that is a profile

    @property
    def name(self) -> str:
        return f"{self.variant.name}/{self.device}" if self.device else self.variant.name


def units_of(variant: Variant, devices: list[str] | None, base_dir: Path | None) -> list[Unit]:
    """The variant once, or once per device."""
    return [Unit(variant, d, _compiled_for(variant.recipe, d, base_dir)) for d in (devices or [None])]


def _compiled_for(recipe: Recipe, device: str | None, base_dir: Path | None) -> Recipe:
    """``recipe`` with its host targets declared for ``device`` (a profile); other labels and
    targets with a device of their own (a GPU, an arm64 phone) are left as they are."""
    if device not in PROFILES:
        return recipe
    from compressor.pipeline import resolve_targets

    pin = {t.name: device for t in resolve_targets(recipe, base_dir) if t.device in (None, "cpu", "host")
           and t.name not in recipe.devices}
    if not pin:
        return recipe
    data = recipe.model_dump(mode="json", exclude_unset=True)
    data["devices"] = {**recipe.devices, **pin}
    return Recipe.model_validate(data)


def finished(out: Path, unit: Unit) -> bool:
    """A unit whose report.json exists is done (the completion marker)."""
    return (out / "variants" / unit.name / "report.json").is_file()


class RayPool:
    """Ray started (or joined) for one sweep; shut down on exit when this pool started it."""

    def __init__(self, recipe: Recipe, out: Path, base_dir: Path | None, options: SweepOptions,
                 log: Callable[[str], None] = lambda _: None):
        self.recipe, self.out, self.base_dir, self.options, self.log = recipe, out, base_dir, options, log
        self.pending: dict[Any, Unit] = {}
        self.started = False

    def __enter__(self) -> RayPool:
        import ray

        self.started = _init_ray(self.recipe, self.options)
        self.prepare = ray.remote(num_cpus=1, max_retries=self.options.max_retries)(tasks.prepare)
        self.bench = ray.remote(num_cpus=0, max_retries=self.options.max_retries)(tasks.benchmark)
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        if self.started:
            ray.shutdown()

    def devices(self) -> dict[str, int]:
        """Device label -> number of alive benchmark nodes declaring it."""
        import ray

        return nodes.cluster_devices(ray.nodes())

    def bench_slots(self) -> int:
        import ray

        return int(ray.cluster_resources().get(nodes.BENCH, 0))

    def submit(self, unit: Unit) -> None:
        spec = unit.recipe.model_dump(mode="json", exclude_unset=True)  # keeps which settings the recipe set
        run_dir = str((self.out / "variants" / unit.name).resolve())
        base = str(self.base_dir.resolve()) if self.base_dir else None
        cwd = os.getcwd()  # relative recipe paths resolve against it first, as in `compressor run`
        shared = str((self.out / "stepcache").resolve())
        prepared = self.prepare.remote(spec, run_dir, base, shared, cwd)
        bench = self.bench.options(resources=nodes.bench_resources(unit.device))
        self.pending[bench.remote(prepared, spec, run_dir, base, cwd, unit.device)] = unit

    def wait_one(self) -> tuple[Unit, dict[str, Any]]:
        """The next unit to finish and its outcome (a failed task is a failed outcome)."""
        import ray

        done, _ = ray.wait(list(self.pending), num_returns=1)
        unit = self.pending.pop(done[0])
        try:
            outcome = ray.get(done[0])
        except Exception as e:  # the task's worker or node died more often than max_retries
            outcome = {"status": "failed", "phase": "ray",
                       "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        self.log(f"{unit.name}: {outcome['status']}" + (
            f" ({outcome.get('phase')}: {outcome.get('error')})" if outcome["status"] != "ok"
            else f" (measured on {outcome.get('host')})"))
        return unit, outcome


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
            ray.init(address="local", num_cpus=cpus, resources=nodes.node_resources(nodes.host_profile()),
                     include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = options.ray_address or "a local Ray"
        raise CompressorError(f"cannot start or join {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                              hint="check --ray-address (HOST:PORT of the head, or auto) and `ray status`") from None
    if ray.cluster_resources().get(nodes.BENCH, 0) < 1:
        ray.shutdown()
        raise CompressorError(f"no Ray node offers the {nodes.BENCH!r} resource, so no variant can be benchmarked",
                              hint="start the benchmarking nodes with `compressor sweep-node` (docs/sweep.md)")
    return True


def resolve_devices(pool: RayPool, spec: str | None, recorded: list[str] | None) -> list[str] | None:
    """The devices of this sweep: those a resumed sweep recorded (each must still have a node),
    else those ``spec`` selects among the cluster's."""
    if spec is None:
        return None
    available = pool.devices()
    if recorded is not None:
        missing = [d for d in recorded if d not in available]
        if missing:
            raise CompressorError(f"--resume: no node of device {', '.join(missing)} is in the cluster now",
                                  hint="start a benchmark node of that device (`compressor sweep-node`)")
        return recorded
    return nodes.select_devices(spec, available)
