"""The run: load -> torch steps -> export -> ONNX steps -> per target compile +
benchmark -> report. Reads top to bottom like the flow in DESIGN.md."""

from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from compressor.bench.environment import describe_environment
from compressor.data import Dataset, fit_to_shape, load_split
from compressor.errors import CompressorError, TargetFailed
from compressor.progress import QUIET, Reporter
from compressor.recipe.schema import QuantizeConfig, Recipe
from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import Report, Result
from compressor.steps.base import Step, StepReport
from compressor.steps.registry import make_step
from compressor.targets.base import ModelArtifact
from compressor.targets.registry import make_target
from compressor.targets.spec import TargetSpec, load_target
from compressor.utils.io import atomic_write_json, atomic_write_text
from compressor.utils.paths import resolve_path

BASELINE = "baseline"
COMPRESSED = "compressed"


@dataclass
class RunContext:
    """What steps and targets see of the run."""

    recipe: Recipe
    run_dir: Path
    base_dir: Path | None
    progress: Reporter = QUIET
    resume: bool = False  # reuse finished work found in run_dir (``compressor run --resume``)
    quant_overrides: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Dataset] = field(default_factory=dict)

    @property
    def artifacts_dir(self) -> Path:
        return self.run_dir / "artifacts"

    @property
    def seed(self) -> int:
        return self.recipe.seed

    def input_shape(self) -> list[int] | None:
        return self.recipe.model.input_shape

    def _data(self, which: str) -> Dataset:
        if which not in self._cache:
            split = getattr(self.recipe.data, which)
            ds = load_split(self.recipe.data.source, split.split, split.samples,
                            seed=self.seed if which == "calibration" else None, base_dir=self.base_dir)
            ds = fit_to_shape(ds, self.input_shape())
            ds.check_finite()
            self._cache[which] = ds
        return self._cache[which]

    def calibration_data(self) -> Dataset:
        return self._data("calibration")

    def evaluation_data(self) -> Dataset:
        return self._data("evaluation")

    def train_data(self) -> Dataset:
        return self._data("train")

    def quant_config(self, cfg: QuantizeConfig) -> QuantizeConfig:
        """The step's settings with the current target's required overrides applied."""
        return cfg.model_copy(update=self.quant_overrides) if self.quant_overrides else cfg


@dataclass
class Variant:
    name: str
    precision: str
    onnx_path: Path | None
    torch_model: Any = None
    targets: list[str] | None = None  # None: every target


def default_run_dir(recipe: Recipe) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.name}-{stamp}"


def resolve_targets(recipe: Recipe, base_dir: Path | None) -> list[TargetSpec]:
    extra = [base_dir / "targets", base_dir.parent / "targets"] if base_dir else None
    return [load_target(t, extra) for t in recipe.targets]


def run_recipe(recipe: Recipe, *, recipe_path: Path | None = None, run_dir: Path | None = None,
               progress: Reporter = QUIET, resume: bool = False) -> Report:
    """Run a whole recipe; writes artifacts, report.json and report.md into ``run_dir``."""
    base_dir = recipe_path.resolve().parent if recipe_path else None
    target_specs = resolve_targets(recipe, base_dir)  # fail on a bad target name before any work
    run_dir = run_dir or default_run_dir(recipe)
    ctx = RunContext(recipe, run_dir, base_dir, progress, resume)
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.resolved.yaml",
                      yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    steps = [make_step(kind, getattr(spec, kind), f"{i:02d}-{kind}")
             for i, (kind, spec) in enumerate(zip(recipe.step_kinds(), recipe.steps))]
    eval_data = ctx.evaluation_data()

    # 1. the model and its baseline ONNX
    variants, step_reports = _torch_domain(recipe, ctx, steps, eval_data, progress)
    # 2. ONNX-domain steps, once per distinct quantization profile the targets need
    variants += _onnx_domain(ctx, steps, variants[-1], target_specs, step_reports)
    # 3. the FP32 reference outputs every variant is compared with
    reference = _reference_outputs(variants[0].onnx_path, eval_data, recipe)
    # 4. every (variant, target)
    results = []
    for spec in target_specs:
        for v in variants:
            if v.targets is None or spec.name in v.targets:
                results.append(bench_variant(spec, v, ctx, eval_data, reference))
    report = Report(
        recipe=recipe.name, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        environment=describe_environment(recipe.benchmark.threads),
        steps=[s.to_dict() for s in step_reports], results=results,
    )
    g = recipe.gates
    limits = GateLimits(g.max_accuracy_drop, g.min_speedup, None, g.max_size_bytes)
    report.gates = evaluate_gates(report, limits)
    write_report(report, run_dir)
    return report


def _torch_domain(recipe: Recipe, ctx: RunContext, steps: list[Step], eval_data: Dataset,
                  progress: Reporter) -> tuple[list[Variant], list[StepReport]]:
    spec = recipe.model
    if spec.domain == "onnx":
        from compressor.models.onnx_input import prepare_onnx_input

        path = prepare_onnx_input(resolve_path(spec.onnx, ctx.base_dir), ctx.artifacts_dir / f"{BASELINE}.onnx")
        torch_steps = [s for s in steps if s.domain == "torch"]
        if torch_steps:
            raise CompressorError(f"step {torch_steps[0].kind!r} needs a torch model; this recipe gives an ONNX model",
                                  hint="use model.factory + weights, or drop the torch-domain steps")
        return [Variant(BASELINE, "fp32", path)], []

    from compressor.export.onnx_export import check_export_parity, export_onnx
    from compressor.models.loader import check_input_fits, input_specs, load_torch_model

    progress.log(f"[bold]loading[/] {spec.factory}")
    model = load_torch_model(spec, ctx.base_dir)
    specs = input_specs(spec)
    check_input_fits(model, specs)
    parity_feeds = eval_data.first(8)
    parity_feeds = {s["name"]: parity_feeds.get(s["name"], next(iter(parity_feeds.values()))) for s in specs}

    def export(m: Any, name: str) -> tuple[Path, dict[str, Any]]:
        with progress.task(f"exporting {name} to ONNX"):
            path = export_onnx(m, ctx.artifacts_dir / f"{name}.onnx", specs, output_names=spec.output_names,
                               opset=spec.opset)
        return path, check_export_parity(m, path, parity_feeds)

    base_path, base_parity = export(model, BASELINE)
    reports = [StepReport("export-baseline", "export", details={"parity_vs_torch": base_parity})]
    variants = [Variant(BASELINE, "fp32", base_path, torch_model=model)]
    torch_steps = [s for s in steps if s.domain == "torch"]
    if torch_steps:
        import copy

        current = copy.deepcopy(model)
        for step in torch_steps:
            progress.log(f"[bold]step[/] {step.name}")
            t0 = time.perf_counter()
            current = step.run(current, ctx).eval()
            step.report.seconds = step.report.seconds or time.perf_counter() - t0
            reports.append(step.report)
        name = COMPRESSED if not any(s.domain == "onnx" for s in steps) else f"{COMPRESSED}-fp32"
        path, par = export(current, name)
        reports.append(StepReport(f"export-{name}", "export", details={"parity_vs_torch": par}))
        variants.append(Variant(name, "fp32", path, torch_model=current))
    return variants, reports


def _onnx_domain(ctx: RunContext, steps: list[Step], source: Variant, targets: list[TargetSpec],
                 reports: list[StepReport]) -> list[Variant]:
    onnx_steps = [s for s in steps if s.domain == "onnx"]
    if not onnx_steps:
        return []
    # targets that need the same quantization settings share one quantized model
    groups: dict[str, list[str]] = {}
    for t in targets:
        groups.setdefault(json.dumps(t.quantization, sort_keys=True), []).append(t.name)
    variants = []
    for gi, (key, names) in enumerate(groups.items()):
        ctx.quant_overrides = json.loads(key)
        model: Path = source.onnx_path  # type: ignore[assignment]
        precision = source.precision
        for step in onnx_steps:
            suffix = "" if len(groups) == 1 else f"-{gi}"
            step.name = step.name.split("-g")[0] + (f"-g{gi}" if suffix else "")
            step.report = StepReport(step.name, step.kind)
            ctx.progress.log(f"[bold]step[/] {step.name}" + (f" for {', '.join(names)}" if suffix else ""))
            model = step.run(model, ctx)
            precision = step.output_precision() or precision
            step.report.details["targets"] = names
            reports.append(step.report)
        variants.append(Variant(COMPRESSED, precision, model, source.torch_model, targets=names))
    ctx.quant_overrides = {}
    return variants


def _reference_outputs(baseline_onnx: Path | None, eval_data: Dataset, recipe: Recipe) -> list[np.ndarray] | None:
    from compressor.bench.runner import run_batches
    from compressor.targets.onnxruntime_cpu import OrtSession

    if baseline_onnx is None:
        return None
    session = OrtSession(baseline_onnx, recipe.benchmark.threads, {})
    return run_batches(session, eval_data, recipe.benchmark.eval_batch_size)


def bench_variant(spec: TargetSpec, v: Variant, ctx: RunContext, eval_data: Dataset,
                  reference: list[np.ndarray] | None) -> Result:
    """Compile, load and benchmark one variant on one target. A failure of the target
    (an error, a crash or a hang of its runtime) is recorded in the result; the run
    goes on with the other targets. With ``benchmark.isolate`` (default) the runtime
    part runs in a child process limited to ``benchmark.timeout_s``."""
    from compressor.bench.isolated import TargetJob, run_isolated, run_job
    from compressor.targets.registry import RUNTIMES

    b = ctx.recipe.benchmark
    row: dict[str, Any] = {"variant": v.name, "target": spec.name, "precision": v.precision}
    try:
        target = make_target(spec)
        reason = target.unavailable_reason()
        if reason:
            raise TargetFailed(f"unavailable: {reason}")
        row["precision"] = target.precision_for(v.precision)
        out_dir = ctx.artifacts_dir / spec.name
        out_dir.mkdir(parents=True, exist_ok=True)
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
            threads=spec.threads or b.threads,
            bench={"warmup": b.warmup, "iterations": b.iterations, "min_duration_s": b.min_duration_s,
                   "batch_size": b.batch_size, "eval_batch_size": b.eval_batch_size},
            model=None if artifact else ModelArtifact(v.name, v.precision, v.onnx_path, [], None,
                                                      meta={"seed": ctx.seed}),
            artifact=artifact,
        )
        with ctx.progress.task(f"benchmarking {v.name} on {spec.name}") as update:
            def progress(stage: str, k: int, n: int) -> None:
                update(k, n, stage)

            measured = (run_isolated(job, timeout_s=b.timeout_s, progress=progress) if b.isolate
                        else run_job(job, progress))
        row.update(measured)
    except CompressorError as e:
        row.update(status="failed", error=str(e))
        ctx.progress.log(f"[red]target {spec.name} failed for {v.name}:[/] {e}")
    return Result.model_validate(row)


def write_report(report: Report, run_dir: Path) -> None:
    from compressor.report.markdown import render_markdown

    atomic_write_json(run_dir / "report.json", report.to_json())
    atomic_write_text(run_dir / "report.md", render_markdown(report))
