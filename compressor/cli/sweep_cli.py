"""``compressor sweep``: variants of a recipe on Ray, one merged report; ``compressor
sweep-node``: join a Ray cluster as a benchmark node that declares its device."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressor.cli.group import cli


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--grid", "grid", multiple=True, metavar="PATH=V1,V2,...",
              help="A path into the recipe and its values, e.g. 'steps[0].prune.ratio=0.3,0.5'; repeat to multiply.")
@click.option("--search", type=click.Choice(["optuna"]), default=None,
              help="Search the --space options with a multi-objective Optuna study instead of a grid.")
@click.option("--space", "space", multiple=True, metavar="PATH=SPEC",
              help="A search dimension: 'PATH=float:LO:HI[:log]', 'PATH=int:LO:HI[:STEP]' or 'PATH=V1,V2' (choices).")
@click.option("--trials", type=click.IntRange(min=1), default=12, show_default=True,
              help="--search: trials in all (a resumed study asks only for the missing ones).")
@click.option("--objectives", default="accuracy,latency", show_default=True, metavar="accuracy,latency[,size]",
              help="--search: what the study optimizes (accuracy up; p50 latency and size down).")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="--search: trials in flight at once [default: benchmark slots + 1, at least 2].")
@click.option("--devices", default=None, metavar="all|LABEL,...",
              help="Benchmark every variant on one node of each device kind (nodes from `compressor sweep-node`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder (default runs/<recipe>-sweep-<timestamp>); every node must read and write it.")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out; finished variants and trials are not redone.")
@click.option("--ray-address", default=None, metavar="HOST:PORT|auto",
              help="Join this Ray cluster (default: start an in-process local Ray).")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="Local Ray: CPUs for the steps (default: cores minus the benchmark's threads, at least 1).")
@click.option("--max-retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Re-runs of a variant's task when its worker or node dies.")
def sweep(recipe: Path, grid: tuple[str, ...], search: str | None, space: tuple[str, ...], trials: int,
          objectives: str, parallel: int | None, devices: str | None, out: Path | None, resume: bool, ray_address: str | None,
          num_cpus: int | None, max_retries: int) -> None:
    """Run every variant of RECIPE along the --grid options (or --trials of an Optuna
    --search over the --space options) on Ray and merge them into one report with the
    Pareto front (OUT/report.json, .md, .html).

    Exit code 0 when every variant ran (gates are judged per variant in the report; use
    `compressor check OUT/report.json`), 1 when a variant failed, 2 for a bad recipe,
    --grid or --space.
    """
    import datetime as _dt

    from compressor import api
    from compressor.recipe import load_recipe
    from compressor.sweep.merge import best_line

    if resume and out is None:
        raise click.UsageError("--resume needs --out pointing at the interrupted sweep folder")
    r = load_recipe(recipe)
    out = out or Path("runs") / f"{r.name}-sweep-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    # every --grid/--space option and every variant is checked before Ray starts (RecipeError, exit 2)
    report = api.sweep(r, list(grid), out=out, base_dir=recipe.resolve().parent, resume=resume,
                       ray_address=ray_address, num_cpus=num_cpus, max_retries=max_retries, log=click.echo,
                       search=search, space=list(space), trials=trials, devices=devices, parallel=parallel,
                       objectives=tuple(o.strip() for o in objectives.split(",") if o.strip()))
    info = report.sweep  # type: ignore[attr-defined]
    for target, best in info["best"].items():
        click.echo(f"best on {target}: {best_line(best)}")
    if info.get("search"):
        states = [t["state"] for t in info["search"]["trials"]]
        click.echo(f"trials: {len(states)} ({', '.join(f'{states.count(s)} {s}' for s in sorted(set(states)))}); "
                   f"Pareto trials: {', '.join(map(str, info['search']['pareto_trials'])) or 'none'}")
    click.echo(f"shared steps reused: {info['shared_steps_reused']}")
    click.echo(f"report: {out / 'report.json'}")
    failed = [v["name"] for v in info["variants"] if v["status"] != "ok"]
    if failed:
        click.echo(f"Error: {len(failed)} variant(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)


@cli.command("sweep-node", context_settings={"ignore_unknown_options": True})
@click.option("--address", required=True, metavar="HOST:PORT", help="The Ray head to join.")
@click.option("--device", default=None, metavar="LABEL",
              help="The device label to declare (default: the profile detected here, e.g. x86-64-avx2).")
@click.option("--block", is_flag=True, help="Stay in the foreground (ray start --block).")
@click.option("--print-only", is_flag=True, help="Print the `ray start` command instead of running it.")
@click.argument("ray_args", nargs=-1, type=click.UNPROCESSED)
def sweep_node(address: str, device: str | None, block: bool, print_only: bool, ray_args: tuple[str, ...]) -> None:
    """Join a Ray cluster as a benchmark node: one `bench` slot, no CPUs for other tasks, and
    the node's device as a `bench@LABEL` resource (for `compressor sweep --devices`).
    RAY_ARGS go to `ray start` as they are (e.g. --node-ip-address=10.0.0.7).

        compressor sweep-node --address HEAD:6379 --device rpi5-arm64"""
    import json
    import os
    import shlex
    import shutil

    from compressor.sweep.nodes import host_profile, node_resources

    label = device or host_profile()
    ray = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    cmd = [ray, "start", f"--address={address}", "--num-cpus=0", f"--resources={json.dumps(node_resources(label))}",
           *(["--block"] if block else []), *ray_args]
    click.echo(shlex.join(cmd), err=not print_only)
    if not print_only:
        os.execv(cmd[0], cmd)  # the node is `ray start` itself (stop it with `ray stop`)
