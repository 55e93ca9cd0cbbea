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
from compressor.errors import CompressorError, RecipeError, TargetFailed
from compressor.progress import QUIET, Reporter
from compressor.recipe.schema import QuantizeConfig, Recipe
from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import GateResult, Report, Result
from compressor.steps.base import Step, StepReport
from compressor.steps.registry import make_step
from compressor.targets.base import ModelArtifact
from compressor.targets.devices import Device, detect_host, resolve_device
from compressor.targets.quant_defaults import QuantChoice, resolve_quantization
from compressor.targets.registry import make_target
from compressor.targets.spec import TargetSpec, load_target
from compressor.limits import check_limits
from compressor.stepcache import StepCache, file_digest
from compressor.utils.io import atomic_write_json, atomic_write_text, sha256_file
from compressor.utils.killpoints import checkpoint
from compressor.utils.paths import resolve_path
from compressor.utils.seed import seed_everything

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
    torch_model: Any = None  # the torch model behind the ONNX-domain steps' input (torch-side engines, e.g. INC)
    _cache: dict[str, Dataset] = field(default_factory=dict)
    cache: StepCache | None = None  # finished work on disk (reused with ``resume``)
    quant_choices: dict[str, QuantChoice] = field(default_factory=dict)  # target -> settings for its device, and why

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
        """The step's settings, with the current targets' quantization settings filling in
        what the recipe left unset (what the recipe sets explicitly wins; a strict target's
        conflicts were refused by :func:`check_target_quantization` before the run)."""
        fill = {k: v for k, v in self.quant_overrides.items() if k not in cfg.model_fields_set}
        return cfg.model_copy(update=fill) if fill else cfg


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
    """The recipe's targets, each with the device it deploys to (``devices:`` wins over the
    target file's ``device:``); an unknown target or device is an error before any work."""
    extra = [base_dir / "targets", base_dir.parent / "targets"] if base_dir else None
    specs = []
    for name in recipe.targets:
        spec = load_target(name, extra)
        if name in recipe.devices:
            spec = spec.model_copy(update={"device": recipe.devices[name]})
        resolve_device(spec.device)  # RecipeError naming the known devices
        specs.append(spec)
    return specs


def target_device(spec: TargetSpec) -> Device:
    return resolve_device(spec.device)


def quantization_plan(recipe: Recipe, targets: list[TargetSpec]) -> dict[str, QuantChoice]:
    """For each target: the quantize settings its (runtime, device) fills in where the recipe
    is silent, the reason, and warnings for explicit settings known to be wrong there. Keys
    that every quantize step sets explicitly are the recipe's, not the target's."""
    cfgs = [spec.quantize for kind, spec in zip(recipe.step_kinds(), recipe.steps) if kind == "quantize"]
    if not cfgs:
        return {}
    explicit_keys = set.intersection(*(set(c.model_fields_set) for c in cfgs))
    explicit = {k: getattr(cfgs[0], k) for k in explicit_keys}
    explicit.setdefault("mode", cfgs[0].mode)
    return {t.name: resolve_quantization(t.runtime, target_device(t), t.quantization, explicit) for t in targets}


def run_recipe(recipe: Recipe, *, recipe_path: Path | None = None, run_dir: Path | None = None,
               progress: Reporter = QUIET, resume: bool = False) -> Report:
    """Run a whole recipe; writes artifacts, report.json and report.md into ``run_dir``."""
    base_dir = recipe_path.resolve().parent if recipe_path else None
    target_specs = resolve_targets(recipe, base_dir)  # fail on a bad target name before any work
    check_target_quantization(recipe, target_specs)
    quant_choices = quantization_plan(recipe, target_specs)
    check_limits(recipe, base_dir)  # model size, eval set size, memory: before any work
    seed_everything(recipe.seed, torch_too=recipe.model.domain == "torch")
    run_dir = run_dir or default_run_dir(recipe)
    ctx = RunContext(recipe, run_dir, base_dir, progress, resume, quant_choices=quant_choices)
    ctx.cache = StepCache(run_dir, reuse=resume)
    for name, choice in quant_choices.items():
        for w in choice.warnings:
            progress.log(f"[yellow]warning[/] {name}: {w}")
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.resolved.yaml",
                      yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    steps = [make_step(kind, getattr(spec, kind), f"{i:02d}-{kind}")
             for i, (kind, spec) in enumerate(zip(recipe.step_kinds(), recipe.steps))]
    checkpoint("run:start")
    eval_data = ctx.evaluation_data()
    check_limits(recipe, base_dir, eval_bytes=sum(a.nbytes for a in eval_data.inputs.values()))

    # 1. the model and its baseline ONNX
    needs_torch = any(_consumes(t) == "torch" for t in target_specs)
    variants, step_reports = _torch_domain(recipe, ctx, steps, eval_data, progress, needs_torch)
    # 2. ONNX-domain steps, once per distinct quantization profile the targets need
    variants += _onnx_domain(ctx, steps, variants[-1], target_specs, step_reports)
    # 3. the FP32 reference outputs every variant is compared with
    reference = _reference_outputs(variants[0].onnx_path, eval_data, recipe)
    checkpoint("reference:done")
    # 4. every (variant, target); finished results are recorded one by one for --resume
    results = []
    for spec in target_specs:
        for v in variants:
            if v.targets is None or spec.name in v.targets:
                results.append(_bench_cached(spec, v, ctx, eval_data, reference))
    # 5. paired timing: each compressed model against the baseline, interleaved on the same target
    b = recipe.benchmark
    if b.paired or (b.paired is None and recipe.gates.min_speedup is not None):
        from compressor.bench.paired import pair_with_baseline

        with progress.task("paired timing against the baseline"):
            pair_with_baseline(results, target_specs, run_dir, eval_data, threads=b.threads, batch_size=b.batch_size,
                               warmup=b.warmup, isolate=b.isolate, timeout_s=b.timeout_s, log=progress.log)
    report = Report(
        recipe=recipe.name, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        environment=describe_environment(recipe.benchmark.threads),
        steps=[s.to_dict() for s in step_reports], results=results,
        warnings=[f"{name}: {w}" for name, c in quant_choices.items() for w in c.warnings] or None,
    )
    # record the recipe's gates so `compressor check` re-evaluates them; the latency-increase
    # gate needs a previous report, so only `compressor check --baseline` can evaluate it
    report.gate_limits = GateLimits.from_mapping(recipe.gates.model_dump()).limits() or None
    run_limits = {k: v for k, v in (report.gate_limits or {}).items() if k != "max_latency_increase"}
    report.gates = evaluate_gates(report, GateLimits.from_mapping(run_limits))
    # steps may add gates of their own (accuracy-aware quantization that kept a model failing its criterion)
    report.gates += [GateResult.model_validate(g) for r in step_reports for g in r.details.get("gates", [])]
    write_report(report, run_dir)
    ctx.cache.write_log()
    return report


def check_target_quantization(recipe: Recipe, targets: list[TargetSpec]) -> None:
    """A strict target (TensorRT: S8/S8 symmetric) cannot run other quantization settings:
    refuse a quantize step that sets one of its keys to another value, before any work."""
    for kind, spec in zip(recipe.step_kinds(), recipe.steps):
        if kind != "quantize":
            continue
        cfg = spec.quantize
        for t in targets:
            if not t.quantization_strict:
                continue
            clash = {k: (getattr(cfg, k), v) for k, v in t.quantization.items()
                     if k in cfg.model_fields_set and getattr(cfg, k) != v}
            if clash:
                got = ", ".join(f"{k}: {mine} (needs {need})" for k, (mine, need) in clash.items())
                raise RecipeError(f"quantize sets {got}, which target {t.name!r} cannot run",
                                  hint=f"drop these keys from the quantize step (the target sets them) or remove {t.name!r}")


def _consumes(spec: TargetSpec) -> str:
    from compressor.targets.registry import target_class

    try:
        return target_class(spec.runtime).consumes
    except CompressorError:
        return "onnx"  # an unknown runtime fails later, as that target's result


def _model_identity(spec: Any, base_dir: Path | None, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the baseline export depends on: factory source, kwargs, weights bytes, inputs, opset."""
    from compressor.models.factory import resolve_file, split_spec

    module, _ = split_spec(spec.factory)
    factory_file = resolve_file(module, base_dir)
    weights = resolve_path(spec.weights, base_dir) if spec.weights else None
    return {"factory": spec.factory, "factory_sha": file_digest(factory_file), "kwargs": spec.factory_kwargs,
            "weights_sha": file_digest(weights), "inputs": specs, "outputs": spec.output_names, "opset": spec.opset}


def _report_from(d: dict[str, Any]) -> StepReport:
    return StepReport(d["name"], d["kind"], seconds=d.get("seconds", 0.0), details=d.get("details", {}), cached=True)


def _bench_cached(spec: TargetSpec, v: Variant, ctx: RunContext, eval_data: Dataset,
                  reference: list[np.ndarray] | None) -> Result:
    """:func:`bench_variant`, reusing a finished result of the same model/target/settings on resume."""
    assert ctx.cache is not None
    what = f"bench:{v.name}:{spec.name}"
    key = ctx.cache.key("bench", variant=v.name, precision=v.precision, model=file_digest(v.onnx_path),
                        target=spec.model_dump(mode="json"), benchmark=ctx.recipe.benchmark.model_dump(mode="json"),
                        data=ctx.recipe.data.model_dump(mode="json"), seed=ctx.seed)
    rec = ctx.cache.get(what, key)
    if rec is not None:
        ctx.progress.log(f"[bold]reused[/] {v.name} on {spec.name} (finished before the interruption)")
        return Result.model_validate(rec["data"]["result"])
    result = bench_variant(spec, v, ctx, eval_data, reference)
    if result.status == "ok":  # failures (crash, timeout) are retried on resume
        files = [ctx.run_dir / result.artifact] if result.artifact and (ctx.run_dir / result.artifact).is_file() else []
        ctx.cache.put(what, key, {"result": result.model_dump(mode="json", exclude_none=True)}, files)
    return result


def _torch_domain(recipe: Recipe, ctx: RunContext, steps: list[Step], eval_data: Dataset,
                  progress: Reporter, needs_torch: bool = False) -> tuple[list[Variant], list[StepReport]]:
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

    cache = ctx.cache or StepCache(ctx.run_dir, reuse=False)
    model_key = cache.key("export-baseline", model=_model_identity(spec, ctx.base_dir, specs))
    rec = cache.get("export:baseline", model_key)
    if rec is not None:
        base_path, base_parity = ctx.artifacts_dir / rec["data"]["output"], rec["data"]["parity"]
        progress.log("[bold]reused[/] the baseline ONNX export")
    else:
        base_path, base_parity = export(model, BASELINE)
        cache.put("export:baseline", model_key, {"output": base_path.name, "parity": base_parity}, [base_path])
    reports = [StepReport("export-baseline", "export", details={"parity_vs_torch": base_parity}, cached=rec is not None)]
    variants = [Variant(BASELINE, "fp32", base_path, torch_model=model)]
    torch_steps = [s for s in steps if s.domain == "torch"]
    name = COMPRESSED if not any(s.domain == "onnx" for s in steps) else f"{COMPRESSED}-fp32"
    # The torch steps are cached as a chain: the ONNX export of their result, and the result
    # as data (weights + architecture edits such as pruning histories; compressor.steps.rebuild),
    # so targets that consume the torch model get it back without re-running the steps.
    chain_key = cache.key("torch-steps", input=model_key, seed=ctx.seed, data=recipe.data.model_dump(mode="json"),
                          steps=[(s.kind, s.name, s.config.model_dump(mode="json")) for s in torch_steps])
    rec = cache.get("torch-steps", chain_key) if torch_steps else None
    rebuilt = _rebuild_chain(model, rec, name, ctx, parity_feeds) if rec is not None and needs_torch else None
    if rec is not None and (rebuilt is not None or not needs_torch):
        reports += [_report_from(d) for d in rec["data"]["reports"]]
        variants.append(Variant(name, "fp32", ctx.artifacts_dir / rec["data"]["output"], torch_model=rebuilt))
        progress.log(f"[bold]reused[/] {len(torch_steps)} torch-domain step(s) and their export")
    elif torch_steps:
        import copy

        first_report = len(reports)
        current = copy.deepcopy(model)
        for step in torch_steps:
            progress.log(f"[bold]step[/] {step.name}")
            t0 = time.perf_counter()
            current = step.run(current, ctx).eval()
            step.report.seconds = step.report.seconds or time.perf_counter() - t0
            reports.append(step.report)
        path, par = export(current, name)
        reports.append(StepReport(f"export-{name}", "export", details={"parity_vs_torch": par}))
        variants.append(Variant(name, "fp32", path, torch_model=current))
        from compressor.steps.rebuild import chain_structure, save_result

        torch_files = save_result(current, chain_structure(torch_steps), ctx.artifacts_dir, name)
        cache.put("torch-steps", chain_key, {"output": path.name, "torch_result": name,
                                             "reports": [r.to_dict() for r in reports[first_report:]]},
                  [path, *torch_files])
    return variants, reports


def _rebuild_chain(model: Any, rec: dict[str, Any], name: str, ctx: RunContext,
                   feeds: dict[str, np.ndarray]) -> Any:
    """The torch-steps chain's result rebuilt from its record (factory model + saved
    architecture edits + weights), checked against the chain's ONNX export; None when the
    record has no torch result (an older run) or the rebuilt model does not match."""
    import copy

    from compressor.export.onnx_export import check_export_parity
    from compressor.steps.rebuild import rebuild

    if rec["data"].get("torch_result") != name:
        return None
    try:
        rebuilt = rebuild(copy.deepcopy(model), ctx.artifacts_dir, name, ctx)
        check_export_parity(rebuilt, ctx.artifacts_dir / rec["data"]["output"], feeds)
    except CompressorError as e:
        ctx.progress.log(f"[yellow]re-running the torch-domain steps[/]: their saved result cannot be rebuilt ({e})")
        return None
    ctx.progress.log("[bold]rebuilt[/] the torch-domain steps' model from its pruning history and weights")
    return rebuilt


def _onnx_domain(ctx: RunContext, steps: list[Step], source: Variant, targets: list[TargetSpec],
                 reports: list[StepReport]) -> list[Variant]:
    onnx_steps = [s for s in steps if s.domain == "onnx"]
    if not onnx_steps:
        return []
    # targets whose quantization settings come out the same share one quantized model; the
    # settings follow each target's (runtime, device), and what the recipe sets explicitly wins
    groups: dict[str, list[str]] = {}
    for t in targets:
        choice = ctx.quant_choices.get(t.name)
        fill = choice.settings if choice else {}
        groups.setdefault(json.dumps(fill, sort_keys=True), []).append(t.name)
    variants = []
    ctx.torch_model = source.torch_model
    multi = len(groups) > 1
    base_names = [s.name for s in onnx_steps]
    for gi, (overrides, names) in enumerate(groups.items()):
        ctx.quant_overrides = json.loads(overrides)
        model: Path = source.onnx_path  # type: ignore[assignment]
        precision = source.precision
        for step, base in zip(onnx_steps, base_names):
            step.name = f"{base}-g{gi}" if multi else base
            step.report = StepReport(step.name, step.kind)
            cache = ctx.cache or StepCache(ctx.run_dir, reuse=False)
            key = cache.key("onnx-step", kind=step.kind, name=step.name, input=sha256_file(model),
                            config=step.config.model_dump(mode="json"), overrides=ctx.quant_overrides,
                            seed=ctx.seed, data=ctx.recipe.data.model_dump(mode="json"))
            rec = cache.get(f"step:{step.name}", key)
            if rec is not None:
                model = ctx.run_dir / rec["data"]["output"]
                step.report = _report_from(rec["data"]["report"])
                precision = rec["data"]["precision"] or precision
                ctx.progress.log(f"[bold]reused[/] {step.name} (finished before the interruption)")
                reports.append(step.report)
                continue
            ctx.progress.log(f"[bold]step[/] {step.name}" + (f" for {', '.join(names)}" if multi else ""))
            model = step.run(model, ctx)
            precision = step.output_precision() or precision
            step.report.details["targets"] = names
            reports.append(step.report)
            cache.put(f"step:{step.name}", key, {"output": str(model.relative_to(ctx.run_dir)),
                                                 "report": step.report.to_dict(),
                                                 "precision": step.output_precision()}, [model])
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
            threads=spec.threads or b.threads, extra_metrics=list(ctx.recipe.data.metrics),
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
        row["device"] = {**(row.get("device") or {}), **_device_record(spec, v, ctx)}
        row["accuracy_kernels"] = accuracy_kernels(target_device(spec), detect_host())
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


def write_report(report: Report, run_dir: Path) -> None:
    from compressor.report.markdown import render_markdown

    atomic_write_json(run_dir / "report.json", report.to_json())
    checkpoint("report:json")
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    from compressor.report.html import write_html

    write_html(report, run_dir / "report.html", base_dir=run_dir)
