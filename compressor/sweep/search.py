"""``compressor sweep --search optuna``: a multi-objective Optuna study whose trials are
the sweep's prepare -> benchmark Ray tasks.

The study lives in ``OUT/study.journal`` (Optuna's JournalStorage: an append-only file,
each ask, parameter and tell one line), so a killed driver loses nothing: ``--resume``
reloads it, finishes the trials that were running (their parameters are in the journal;
a trial whose report.json exists is told, not run again) and asks only for the trials
still missing from ``--trials``. The sampler is TPE (see docs/sweep.md for why).

Objectives, read from each trial's report (its first target; with ``--devices``, the
first device): ``accuracy`` (maximized; a lower-is-better metric such as mse is negated),
``latency`` (p50 ms, minimized), ``size`` (bytes, minimized).

    >>> run_search(recipe, [parse_dimension("steps[0].prune.ratio=float:0.2:0.8")], Path("runs/s"),
    ...            base_dir=None, search=SearchOptions(trials=12))            # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError, RecipeError
from compressor.recipe.schema import Recipe
from compressor.report.gates import is_baseline
from compressor.report.model import Report, load_report
from compressor.sweep.merge import merge_sweep
from compressor.sweep.pool import RayPool, SweepOptions, Unit, finished, resolve_devices, units_of
from compressor.sweep.run import MANIFEST, check_manifest
from compressor.sweep.space import Dimension, check_space, space_variant
from compressor.utils.io import atomic_write_json

JOURNAL = "study.journal"
STUDY = "compressor-sweep"
OBJECTIVES = {"accuracy": "maximize", "latency": "minimize", "size": "minimize"}


@dataclass
class SearchOptions:
    """The search: how many trials in all, which objectives, how many trials run at once."""

    trials: int
    objectives: tuple[str, ...] = ("accuracy", "latency")
    parallel: int | None = None  # trials in flight (default: benchmark slots + 1, at least 2)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise CompressorError("--search optuna needs Optuna", hint="pip install 'compressor[sweep]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(out: Path, recipe: Recipe, objectives: tuple[str, ...]) -> Any:
    """The study in ``out/study.journal`` (created, or loaded to resume). The sampler's seed is
    the recipe's seed plus the trials already asked, so a resumed study does not draw the
    same random start-up trials again."""
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    known = {s.study_name: s for s in storage.get_all_studies()}
    asked = len(storage.get_all_trials(known[STUDY]._study_id, deepcopy=False)) if STUDY in known else 0
    with warnings.catch_warnings():  # multivariate TPE is marked experimental; it models the settings jointly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=recipe.seed + asked, n_startup_trials=4, multivariate=True,
                                             constant_liar=True)
    return optuna.create_study(study_name=STUDY, storage=storage, sampler=sampler, load_if_exists=True,
                               directions=[OBJECTIVES[o] for o in objectives])


def objective_values(report: Report, objectives: tuple[str, ...], target: str) -> list[float]:
    """The trial's objectives from its compressed row on ``target``; ValueError when missing."""
    rows = [r for r in report.results if r.target == target and not is_baseline(r.variant)]
    row = next((r for r in rows if r.variant == "compressed"), rows[-1] if rows else None)
    if row is None or row.status != "ok":
        raise ValueError(f"no compressed result on {target}" + (f": {row.error}" if row and row.error else ""))
    values = {"accuracy": None if row.accuracy is None else (row.accuracy.value if row.accuracy.higher_is_better
                                                            else -row.accuracy.value),
              "latency": row.latency_ms.p50 if row.latency_ms else None, "size": row.size_bytes}
    missing = [o for o in objectives if values[o] is None]
    if missing:
        raise ValueError(f"the compressed result on {target} has no {', '.join(missing)}")
    return [float(values[o]) for o in objectives]  # type: ignore[arg-type]


class _Search:
    """The ask -> run -> tell loop over one study and one RayPool."""

    def __init__(self, recipe: Recipe, dims: list[Dimension], out: Path, base_dir: Path | None,
                 opts: SearchOptions, study: Any, log: Callable[[str], None]):
        self.recipe, self.dims, self.out, self.base_dir, self.opts = recipe, dims, out, base_dir, opts
        self.study, self.log = study, log
        self.units: dict[int, list[Unit]] = {}  # trial number -> its units (every trial that ran)
        self.trials: dict[int, Any] = {}  # trial number -> its optuna Trial, while it runs
        self.waiting: dict[int, set[str]] = {}  # trial number -> units not finished yet
        self.devices: list[str] | None = None

    def start(self, trial: Any, pool: RayPool | None) -> None:
        """Run a trial (new, or running when the driver died): its parameters, its units."""
        optuna = _optuna()
        params = {d.name: d.suggest(trial) for d in self.dims}  # stored ones on a resumed trial
        try:
            variant = space_variant(self.recipe, self.dims, params, f"trial{trial.number:03d}")
        except RecipeError as e:  # a combination the recipe refuses: a failed trial, recorded
            trial.set_user_attr("error", str(e))
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            return
        trial.set_user_attr("variant", variant.name)
        self.trials[trial.number] = trial
        same = self._duplicate_of(trial.number, params)
        if same is not None:  # the sampler proposed settings already run: recorded, not run twice
            trial.set_user_attr("duplicate_of", same)
            self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            return
        units = units_of(variant, self.devices, self.base_dir)
        self.units[trial.number] = units
        self.waiting[trial.number] = {u.name for u in units if not finished(self.out, u)}
        for u in units:
            if u.name in self.waiting[trial.number]:
                assert pool is not None
                pool.submit(u)
        if not self.waiting[trial.number]:
            self.tell(trial.number)

    def _duplicate_of(self, number: int, params: dict[str, Any]) -> int | None:
        for t in self.study.get_trials(deepcopy=False):
            if t.number != number and t.params == params and (t.number in self.units or t.state.name == "COMPLETE"):
                return t.number
        return None

    def done(self, unit: Unit, number: int) -> None:
        self.waiting[number].discard(unit.name)
        if not self.waiting[number]:
            self.tell(number)

    def tell(self, number: int) -> None:
        """Tell the study a trial's objectives (from its first device's report) or its failure."""
        optuna = _optuna()
        del self.waiting[number]
        unit = self.units[number][0]
        rd = self.out / "variants" / unit.name
        try:
            if not (rd / "report.json").is_file():
                raise ValueError("the variant did not finish (see its row in the report)")
            values = objective_values(load_report(rd), self.opts.objectives, self.recipe.targets[0])
        except ValueError as e:
            self.trials[number].set_user_attr("error", str(e))
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
            self.log(f"trial {number}: failed ({e})")
            return
        self.study.tell(number, values)
        self.log(f"trial {number}: " + ", ".join(f"{o} {v:g}" for o, v in zip(self.opts.objectives, values)))


def run_search(recipe: Recipe, dims: list[Dimension], out: Path, *, base_dir: Path | None,
               search: SearchOptions, resume: bool = False, options: SweepOptions | None = None,
               log: Callable[[str], None] = lambda _: None) -> Report:
    """Search ``dims`` with ``search.trials`` Optuna trials (each a variant run as Ray tasks)
    and merge every trial into ``out/report.json``. Raises RecipeError before anything runs
    when a dimension is bad."""
    options = options or SweepOptions()
    check_space(recipe, dims)
    if search.trials < 1 or not search.objectives or any(o not in OBJECTIVES for o in search.objectives):
        raise RecipeError(f"--trials must be >= 1 and --objectives a list of {', '.join(OBJECTIVES)}")
    manifest = {"recipe": recipe.name, "search": "optuna", "space": [d.describe() for d in dims],
                "trials": search.trials, "objectives": list(search.objectives)}
    if options.devices is not None:
        manifest["devices"] = options.devices
    old = check_manifest(out, manifest, resume)
    out.mkdir(parents=True, exist_ok=True)
    study = open_study(out, recipe, search.objectives)
    s = _Search(recipe, dims, out, base_dir, search, study, log)
    s.devices = old.get("device_list") if old else None
    trials = study.get_trials(deepcopy=False)
    running = [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    if trials:
        log(f"study: {len(trials) - len(running)} trial(s) finished before, {len(running)} to finish, "
            f"{max(0, search.trials - len(trials))} to ask")
    outcomes: dict[str, dict[str, Any]] = {}  # why a unit failed, for its row
    if running or len(trials) < search.trials:
        import optuna

        with RayPool(recipe, out, base_dir, options, log) as pool:
            s.devices = resolve_devices(pool, options.devices, s.devices)
            atomic_write_json(out / MANIFEST, {**manifest, **({"device_list": s.devices} if s.devices else {})})
            parallel = search.parallel or max(2, pool.bench_slots() + 1)
            for t in running:
                s.start(optuna.trial.Trial(study, t._trial_id), pool)
            while True:
                while len(s.waiting) < parallel and len(study.get_trials(deepcopy=False)) < search.trials:
                    s.start(study.ask(), pool)
                if not pool.pending:
                    break
                unit, outcomes[unit.name] = pool.wait_one()
                s.done(unit, int(unit.variant.name.removeprefix("trial")))
    # every trial that ran (also those finished before a resume), in trial order
    for t in study.get_trials(deepcopy=False):
        if t.number not in s.units and "variant" in t.user_attrs and "duplicate_of" not in t.user_attrs:
            s.units[t.number] = units_of(space_variant(recipe, dims, t.params, t.user_attrs["variant"]),
                                         s.devices, base_dir)
    units = [u for n in sorted(s.units) for u in s.units[n]]
    return merge_sweep(recipe, units, out, outcomes, search=summarize(study, search.objectives))


def summarize(study: Any, objectives: tuple[str, ...]) -> dict[str, Any]:
    """The study for the report: every trial (state, parameters, objectives) and the Pareto trials."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    return {
        "sampler": type(study.sampler).__name__, "storage": JOURNAL,
        "objectives": {o: OBJECTIVES[o] for o in objectives},
        "trials": [{"number": t.number, "state": t.state.name.lower(), "params": t.params,
                    "values": dict(zip(objectives, t.values)) if t.values else None,
                    **{k: t.user_attrs[k] for k in ("variant", "error", "duplicate_of") if k in t.user_attrs}}
                   for t in trials],
        "pareto_trials": sorted(t.number for t in study.best_trials) if complete else [],
    }
