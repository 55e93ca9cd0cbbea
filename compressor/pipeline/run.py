"""The run: plan -> load -> torch steps -> export -> ONNX steps -> per target compile +
benchmark -> report. Reads top to bottom like the flow in docs/architecture.md; each stage lives in
its own module of this package (plan, limits, variants, jobs)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import yaml

from compressor.bench.environment import describe_environment
from compressor.context import RunContext
from compressor.pipeline.jobs import agreement_noise_floor, bench_cached, reference_continuations, reference_outputs
from compressor.pipeline.limits import check_limits
from compressor.pipeline.output import write_report
from compressor.pipeline.plan import check_target_quantization, consumes, quantization_plan, resolve_targets
from compressor.pipeline.variants import decoder_domain, onnx_domain, torch_domain
from compressor.progress import QUIET, Reporter
from compressor.recipe.paths import anchor_paths
from compressor.recipe.schema import Recipe
from compressor.report.gates import record_gates
from compressor.report.model import GateResult, Report, Result
from compressor.report.verdict import int8_verdict
from compressor.stepcache import StepCache
from compressor.steps.base import StepReport
from compressor.steps.registry import make_step
from compressor.targets.spec import TargetSpec
from compressor.utils.io import atomic_write_text
from compressor.utils.killpoints import checkpoint
from compressor.utils.seed import seed_everything


def default_run_dir(recipe: Recipe) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.name}-{stamp}"


def run_recipe(recipe: Recipe, *, recipe_path: Path | None = None, run_dir: Path | None = None,
               progress: Reporter = QUIET, resume: bool = False, base_dir: Path | None = None,
               shared_cache: Path | None = None, prepare_only: bool = False) -> Report | None:
    """Run a whole recipe; writes artifacts, report.json and report.md into ``run_dir``.
    Relative paths in the recipe resolve against ``recipe_path``'s folder, else ``base_dir``.

    For ``compressor sweep``: ``shared_cache`` is a step-cache store shared by the variants
    (see compressor.stepcache); ``prepare_only`` stops after the steps (returns None), so the
    benchmarks can run later, on a machine reserved for them, with ``resume=True``."""
    base_dir = recipe_path.resolve().parent if recipe_path else base_dir
    recipe = anchor_paths(recipe, base_dir)  # every file the recipe names, found once
    ctx, target_specs = start_run(recipe, run_dir or default_run_dir(recipe), base_dir, progress, resume)
    ctx.cache = StepCache(ctx.run_dir, reuse=resume, shared=shared_cache)
    steps = [make_step(kind, getattr(spec, kind), f"{i:02d}-{kind}")
             for i, (kind, spec) in enumerate(zip(recipe.step_kinds(), recipe.steps))]
    checkpoint("run:start")
    eval_data = None  # a decoder LLM is measured on the recipe's text (ctx.decoder)
    if recipe.model.domain == "llm":
        # 1. the decoder LLM and its baseline ONNX with KV cache
        variants, step_reports = decoder_domain(recipe, ctx, progress)
    else:
        eval_data = ctx.evaluation_data()
        check_limits(recipe, eval_bytes=sum(a.nbytes for a in eval_data.inputs.values()))
        # 1. the model and its baseline ONNX, then the torch-domain steps and their export
        needs_torch = any(consumes(t) == "torch" for t in target_specs)
        variants, step_reports = torch_domain(recipe, ctx, steps, eval_data, progress, needs_torch)
    # 2. ONNX-domain steps, once per distinct quantization profile (decoder LLMs: engine) the targets need
    variants += onnx_domain(ctx, steps, variants[-1], target_specs, step_reports)
    if prepare_only:
        ctx.cache.write_log()
        return None
    # 3. the FP32 reference each variant is compared with: that of the FP32 model it was made from
    references = {r.name: reference_outputs(r.onnx_path, eval_data, recipe) if eval_data is not None
                  else reference_continuations(r.onnx_path, ctx)
                  for r in {v.parity_reference.name: v.parity_reference for v in variants}.values()}
    base = next((v.parity_reference for v in variants if v.parity_reference.name == "baseline"), None)
    floor = agreement_noise_floor(base.onnx_path, eval_data, recipe, references.get(base.name)) \
        if base is not None and eval_data is not None else None
    checkpoint("reference:done")
    # 4. every (variant, target); finished results are recorded one by one for --resume
    results = [bench_cached(spec, v, ctx, eval_data, references[v.parity_reference.name])
               for spec in target_specs for v in variants if v.targets is None or spec.name in v.targets]
    # 5. paired timing: each compressed model against the baseline, interleaved on the same target
    b = recipe.benchmark
    if eval_data is not None and (b.paired or (b.paired is None and recipe.gates.min_speedup is not None)):
        from compressor.bench.paired import pair_with_baseline

        with progress.task("paired timing against the baseline"):
            pair_with_baseline(results, target_specs, ctx.run_dir, eval_data, threads=b.threads,
                               batch_size=b.batch_size, warmup=b.warmup, isolate=b.isolate, timeout_s=b.timeout_s,
                               log=progress.log)
    # 6. the report, with the recipe's gates evaluated
    report = build_report(recipe, ctx, step_reports, results)
    report.noise_floor = floor
    write_report(report, ctx.run_dir)
    ctx.cache.write_log()
    return report


def start_run(recipe: Recipe, run_dir: Path, base_dir: Path | None, progress: Reporter,
              resume: bool) -> tuple[RunContext, list[TargetSpec]]:
    """Everything that can refuse the recipe, before any work (bad target, a setting a strict
    target cannot run, resource limits); then the run folder, its context and resolved recipe."""
    target_specs = resolve_targets(recipe, base_dir)
    check_target_quantization(recipe, target_specs)
    quant_choices = quantization_plan(recipe, target_specs)
    check_limits(recipe)  # model size, eval set size, memory
    seed_everything(recipe.seed, torch_too=recipe.model.domain == "torch")
    ctx = RunContext(recipe, run_dir, base_dir, progress, resume, quant_choices=quant_choices)
    ctx.cache = StepCache(run_dir, reuse=resume)
    for name, choice in quant_choices.items():
        for w in choice.warnings:
            progress.log(f"[yellow]warning[/] {name}: {w}")
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.resolved.yaml",
                      yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    return ctx, target_specs


def build_report(recipe: Recipe, ctx: RunContext, step_reports: list[StepReport], results: list[Result]) -> Report:
    """The run's report: results, step reports, the device warnings, and the recipe's gates."""
    report = Report(
        recipe=recipe.name, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        environment=describe_environment(recipe.benchmark.threads),
        steps=[s.to_dict() for s in step_reports], results=results,
        warnings=[f"{name}: {w}" for name, c in ctx.quant_choices.items() for w in c.warnings] or None,
    )
    # steps may add gates of their own (accuracy-aware quantization that kept a model failing its criterion)
    record_gates(report, recipe.gates.model_dump(),
                 [GateResult.model_validate(g) for r in step_reports for g in r.details.get("gates", [])])
    report.int8_verdict = int8_verdict(report)  # printed with the device notes (report.markdown.device_notes)
    return report
