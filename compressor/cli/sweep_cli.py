"""``compressor sweep``: variants of a recipe on Ray, one merged report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressor.cli.group import cli


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--grid", "grid", multiple=True, required=True, metavar="PATH=V1,V2,...",
              help="A path into the recipe and its values, e.g. 'steps[0].prune.ratio=0.3,0.5'; repeat to multiply.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder (default runs/<recipe>-sweep-<timestamp>); every node must read and write it.")
@click.option("--resume", is_flag=True, help="Continue the sweep in --out; finished variants are not redone.")
@click.option("--ray-address", default=None, metavar="HOST:PORT|auto",
              help="Join this Ray cluster (default: start an in-process local Ray).")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None,
              help="Local Ray: CPUs for the steps (default: cores minus the benchmark's threads, at least 1).")
@click.option("--max-retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Re-runs of a variant's task when its worker or node dies.")
def sweep(recipe: Path, grid: tuple[str, ...], out: Path | None, resume: bool, ray_address: str | None,
          num_cpus: int | None, max_retries: int) -> None:
    """Run every variant of RECIPE along the --grid options on Ray and merge them into
    one report with the Pareto front (OUT/report.json, .md, .html).

    Exit code 0 when every variant ran (gates are judged per variant in the report; use
    `compressor check OUT/report.json`), 1 when a variant failed, 2 for a bad recipe or --grid.
    """
    import datetime as _dt

    from compressor import api
    from compressor.recipe import load_recipe

    if resume and out is None:
        raise click.UsageError("--resume needs --out pointing at the interrupted sweep folder")
    r = load_recipe(recipe)
    out = out or Path("runs") / f"{r.name}-sweep-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    # every --grid option and every variant is checked before Ray starts (RecipeError, exit 2)
    report = api.sweep(r, list(grid), out=out, base_dir=recipe.resolve().parent, resume=resume,
                       ray_address=ray_address, num_cpus=num_cpus, max_retries=max_retries, log=click.echo)
    info = report.sweep  # type: ignore[attr-defined]
    for target, best in info["best"].items():
        click.echo(f"best on {target}: " + (f"{best['variant']} ({best['speedup']}x, accuracy {best['accuracy']})"
                                            if best else "no variant passed the recipe's gates"))
    click.echo(f"shared steps reused: {info['shared_steps_reused']}")
    click.echo(f"report: {out / 'report.json'}")
    failed = [v["name"] for v in info["variants"] if v["status"] != "ok"]
    if failed:
        click.echo(f"Error: {len(failed)} variant(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)
