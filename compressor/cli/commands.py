"""The core commands: run, validate, bench, check, recipe, targets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from compressor.cli.group import cli
from compressor.errors import RecipeError
from compressor.recipe.schema import BenchmarkSpec

RECIPE = click.Path(dir_okay=False, path_type=Path)
BENCH = BenchmarkSpec()  # `compressor bench` defaults are the recipe's `benchmark:` defaults


@cli.command()
@click.argument("recipe", type=RECIPE)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Run folder (default runs/<recipe>-<timestamp>).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out, redoing only unfinished work.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(recipe: Path, out: Path | None, resume: bool, quiet: bool) -> None:
    """Run RECIPE end to end and write report.json / report.md.

    Exit code 0 when every target ran and every gate in the recipe holds, 1 when a
    target failed or a gate failed, 2 for a bad recipe or input.
    """
    from compressor import api
    from compressor.cli.render import print_summary
    from compressor.pipeline import default_run_dir
    from compressor.recipe import load_recipe

    if resume and out is None:
        raise click.UsageError("--resume needs --out pointing at the interrupted run folder")
    r = load_recipe(recipe)
    run_dir = out or default_run_dir(r)
    report = api.run(r, out=run_dir, resume=resume, progress=not quiet, base_dir=recipe.resolve().parent)
    print_summary(report)
    click.echo(f"report: {run_dir / 'report.json'}")
    failed = [x for x in report.results if x.status == "failed"]
    gates_failed = [g for g in report.gates if not g.passed]
    if failed or gates_failed:
        click.echo(f"Error: {failure_summary(len(failed), [g.name for g in gates_failed])}", err=True)
        sys.exit(1)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def failure_summary(targets_failed: int, gates_failed: list[str]) -> str:
    """``1 gate failed (min_speedup)``, ``2 target runs failed``, or both: only what failed."""
    parts = []
    if targets_failed:
        parts.append(f"{_count(targets_failed, 'target run')} failed")
    if gates_failed:
        parts.append(f"{_count(len(gates_failed), 'gate')} failed ({', '.join(gates_failed)})")
    return ", ".join(parts)


@cli.command()
@click.argument("recipe", type=RECIPE)
@click.option("--json", "as_json", is_flag=True, help="Print the resolved recipe as JSON instead of YAML.")
def validate(recipe: Path, as_json: bool) -> None:
    """Check RECIPE and print its resolved form (defaults filled in).

    Never imports the model factory: it checks that the file exists and parses.
    """
    import yaml

    from compressor.recipe import load_recipe
    from compressor.pipeline.checks import check_references

    r = load_recipe(recipe)
    check_references(r, recipe.resolve().parent)
    data = r.model_dump(mode="json")
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False), nl=False)


@cli.group()
def recipe() -> None:
    """Recipe utilities."""


@recipe.command("schema")
def recipe_schema() -> None:
    """Print the recipe JSON Schema."""
    from compressor.recipe.schema import recipe_json_schema

    click.echo(json.dumps(recipe_json_schema(), indent=2))


@recipe.command("list")
def recipe_list() -> None:
    """List the built-in recipes (`compressor recipe copy NAME` copies one here)."""
    from compressor.recipe.starter import builtin_recipes, recipe_description

    for name, path in builtin_recipes().items():
        click.echo(f"{name:24} {recipe_description(path)}")


@recipe.command("copy")
@click.argument("name")
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder to copy into (recipes/NAME.yaml and the examples/ files it uses).")
@click.option("--force", is_flag=True, help="Overwrite files that differ.")
def recipe_copy(name: str, dest: Path, force: bool) -> None:
    """Copy built-in recipe NAME, its example model code and shipped weights into a folder.

    \b
      compressor recipe copy quickstart && compressor run recipes/quickstart.yaml
    """
    from compressor.recipe.starter import copy_recipe

    written, notes = copy_recipe(name, dest, force=force)
    for p in written:
        click.echo(f"wrote {p}")
    for n in notes:
        click.echo(f"note: {n}")


@recipe.command("new")
@click.argument("name")
@click.option("--factory", default=None, help="file.py:function returning your torch nn.Module.")
@click.option("--weights", default=None, help="Its weights (.safetensors, or a .pt/.pth state_dict).")
@click.option("--onnx", default=None, help="An ONNX model, instead of --factory.")
@click.option("--input-shape", default=None, help="Example input shape, batch first, e.g. 1,3,224,224.")
@click.option("--data", default="fashion-mnist", show_default=True,
              help="fashion-mnist, digits, a .npz file, an image folder (<split>/<class>/) or file.py:function.")
@click.option("--metric", default="top1", show_default=True)
@click.option("--target", "targets", multiple=True, help="Target name (repeatable) [default: onnxruntime-cpu].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe file to write [default: NAME.yaml].")
def recipe_new(name: str, factory: str | None, weights: str | None, onnx: str | None, input_shape: str | None,
               data: str, metric: str, targets: tuple[str, ...], out: Path | None) -> None:
    """Write a starter recipe NAME.yaml for your own model (static INT8 on ONNX Runtime,
    an accuracy gate), checked against the recipe schema.

    \b
      compressor recipe new mynet --factory mynet.py:build --weights mynet.safetensors --input-shape 1,3,32,32 --data data.npz
      compressor recipe new mynet --onnx mynet.onnx --data digits
    """
    from compressor.recipe.starter import new_recipe
    from compressor.utils.io import atomic_write_text

    try:
        shape = [int(x) for x in input_shape.split(",")] if input_shape else None
    except ValueError:
        raise RecipeError(f"--input-shape {input_shape!r} is not a comma-separated list of integers") from None
    text = new_recipe(name, factory=factory, weights=weights, onnx=onnx, input_shape=shape, data=data,
                      metric=metric, targets=list(targets) or None)
    path = out or Path(f"{name}.yaml")
    if path.exists():
        raise RecipeError(f"{path} exists", hint="choose another --out or remove it")
    atomic_write_text(path, text)
    click.echo(f"wrote {path}; next: compressor validate {path}")


@cli.group()
def targets() -> None:
    """Deployment targets."""


@targets.command("list")
def targets_list() -> None:
    """List targets and whether each can run on this machine (and why not)."""
    from rich.table import Table

    from compressor.cli.render import console_for_output
    from compressor.targets.registry import target_class
    from compressor.targets.spec import available_targets, load_target_file

    table = Table("target", "runtime", "device", "precisions", "usable here")
    for name, path in available_targets().items():
        try:
            spec = load_target_file(path)
            reason = target_class(spec.runtime).unavailable_reason()
        except RecipeError as e:
            table.add_row(name, "?", "?", "?", f"[red]invalid: {e}[/]")
            continue
        table.add_row(spec.name, spec.runtime, spec.device, ", ".join(spec.precisions),
                      "[green]yes[/]" if reason is None else f"[yellow]no: {reason}[/]")
    console_for_output().print(table)


@cli.command()
@click.argument("models", metavar="MODEL...", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "target_name", default="onnxruntime-cpu", show_default=True, help="Target name or YAML file.")
@click.option("--data", "data_source", default=None, help="Data source for accuracy: fashion-mnist, digits or a .npz file.")
@click.option("--split", default="test", show_default=True)
@click.option("--samples", type=int, default=None, help="Evaluate on this many samples.")
@click.option("--metric", default="top1", show_default=True)
@click.option("--input-shape", default=None, help="Reshape data samples, e.g. 1,1,28,28.")
@click.option("--warmup", type=click.IntRange(min=0), default=BENCH.warmup, show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=BENCH.iterations, show_default=True)
@click.option("--min-duration", type=click.FloatRange(min=0), default=BENCH.min_duration_s, show_default=True,
              help="Seconds of timed runs at least.")
@click.option("--batch-size", type=click.IntRange(min=1), default=BENCH.batch_size, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=BENCH.threads, show_default=True)
@click.option("--precision", default=None, help="Precision label recorded in the report (default: from the file).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write report.json here.")
@click.option("--emulate-cpu", default=None, metavar="DEVICE",
              help="Measure accuracy on another CPU's kernel path under qemu-user: a device profile "
                   "(x86-64-avx2, arm64, arm64-dotprod, arm64-i8mm) or a qemu CPU model (Haswell, cortex-a76). "
                   "arm64 runs ONNX Runtime's aarch64 build (`make arm64-env` sets it up). Accuracy only: "
                   "emulated timings are not kept.")
@click.option("--interleave", is_flag=True,
              help="Time two or more MODELs in alternating rounds in one process and report each one's speedup "
                   "over the first (median and p10-p90 of the rounds). Latency only.")
@click.option("--rounds", type=click.IntRange(min=1), default=30, show_default=True, help="--interleave: rounds.")
@click.option("--per-round", type=click.IntRange(min=1), default=10, show_default=True,
              help="--interleave: timed calls of each model per round.")
@click.pass_context
def bench(ctx: click.Context, models: tuple[Path, ...], target_name: str, data_source: str | None, split: str,
          samples: int | None, metric: str, input_shape: str | None, warmup: int, iterations: int,
          min_duration: float, batch_size: int, threads: int, precision: str | None, out: Path | None,
          emulate_cpu: str | None, interleave: bool, rounds: int, per_round: int) -> None:
    """Benchmark a MODEL artifact on one target (no torch needed); with --interleave,
    time several MODELs against the first, paired round by round.

    \b
      compressor bench model.onnx --data fashion-mnist
      compressor bench fp32.onnx int8.onnx --interleave
    """
    from compressor.bench.emulate import emulated_cpu, is_arm64, qemu_cpu_for, run_emulated

    shape = [int(x) for x in input_shape.split(",")] if input_shape else None
    if interleave or len(models) > 1:
        if not interleave:
            raise click.UsageError("several MODELs are timed together with --interleave")
        if len(models) < 2:
            raise click.UsageError("--interleave times two or more MODELs against the first")
        if emulate_cpu:
            raise click.UsageError("--interleave measures latency; --emulate-cpu measures accuracy")
        from compressor.bench.standalone import bench_interleaved
        from compressor.cli.render import print_summary

        report = bench_interleaved(list(models), target_name, data_source=data_source, split=split, samples=samples,
                                   input_shape=shape, warmup=warmup, rounds=rounds, per_round=per_round,
                                   batch_size=batch_size, threads=threads, out=out)
        print_summary(report)
        if out:
            click.echo(f"report: {out}")
        return
    model = models[0]
    arm64_cpu = None
    if emulate_cpu and not emulated_cpu():
        if not data_source:
            raise click.UsageError("--emulate-cpu measures accuracy: give --data")
        cpu = qemu_cpu_for(emulate_cpu)
        if not is_arm64(cpu):
            sys.exit(run_emulated(cpu, _bench_args(ctx)))
        from compressor.bench.arm64_env import setup

        setup(log=lambda m: click.echo(m, err=True))  # once: later runs find it cached, offline
        arm64_cpu = cpu

    from compressor import api
    from compressor.cli.render import print_summary

    settings = BENCH.model_copy(update={"warmup": warmup, "iterations": iterations, "min_duration_s": min_duration,
                                        "batch_size": batch_size, "threads": threads})
    report = api.bench(model, target_name, data=data_source, split=split, samples=samples, metric=metric,
                       input_shape=shape, benchmark=settings, precision=precision, out=out, emulate_arm64=arm64_cpu)
    print_summary(report)
    if out:
        click.echo(f"report: {out}")
    if any(r.status == "failed" for r in report.results):
        sys.exit(1)


def _bench_args(ctx: click.Context) -> list[str]:
    """This ``bench`` invocation's arguments, without ``--emulate-cpu`` (for the emulated child)."""
    args = ["bench", *(str(m) for m in ctx.params["models"])]
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if not isinstance(p, click.Option) or p.name == "emulate_cpu" or value is None:
            continue
        if p.is_flag:
            args += [p.opts[0]] if value else []
        else:
            args += [p.opts[0], str(value)]
    return args


@cli.command()
@click.argument("report_path", metavar="REPORT", type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), default=None, help="A previous report to compare latency with.")
@click.option("--max-accuracy-drop", type=float, default=None, help="Percentage points (percent for lower-is-better metrics).")
@click.option("--min-speedup", type=float, default=None, help="Compressed p50 speedup over the baseline, same target.")
@click.option("--max-latency-increase", type=float, default=None, help="Percent p50 increase allowed versus --baseline.")
@click.option("--max-size-bytes", type=int, default=None)
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=None,
              help="Latency noise allowance: multiples of the two runs' combined p50 standard error [default: 3].")
@click.option("--latency-floor", type=click.FloatRange(min=0), default=None,
              help="Latency noise allowance never below this percent [default: 5].")
@click.option("--max-perplexity-increase-pct", type=click.FloatRange(min=0), default=None,
              help="Decoder LLMs: percent perplexity increase allowed over the same target's FP32.")
@click.option("--min-decode-tokens-per-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Decoder LLMs: batch-1 greedy decode speed every compressed result must reach.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JUnit XML here.")
def check(report_path: Path, baseline: Path | None, max_accuracy_drop: float | None, min_speedup: float | None,
          max_latency_increase: float | None, max_size_bytes: int | None, latency_tolerance: float | None,
          latency_floor: float | None, max_perplexity_increase_pct: float | None,
          min_decode_tokens_per_s: float | None, junit: Path | None) -> None:
    """CI gate: exit 0 when every gate holds, 1 when one fails, 2 on bad input.

    Gates come from the options, or else from the gates recorded in REPORT (the
    recipe's `gates:`).
    """
    from compressor import api
    from compressor.report.check import write_junit

    result = api.check(report_path, baseline=baseline, max_accuracy_drop=max_accuracy_drop, min_speedup=min_speedup,
                       max_latency_increase=max_latency_increase, max_size_bytes=max_size_bytes,
                       latency_tolerance=latency_tolerance, latency_floor=latency_floor,
                       max_perplexity_increase_pct=max_perplexity_increase_pct,
                       min_decode_tokens_per_s=min_decode_tokens_per_s)
    for line in result.lines():
        click.echo(line)
    if junit:
        write_junit(result.gates, junit, result.recipe)
    sys.exit(result.exit_code)
