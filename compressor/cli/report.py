"""`compressor report`: regenerate report.md/html/json, compare two reports, merge devices."""

from __future__ import annotations

import json
from pathlib import Path

import click

from compressor.cli.group import cli

FORMATS = ("md", "html", "json")
_FILES = {"md": "report.md", "html": "report.html", "json": "report.json"}


class _DefaultRender(click.Group):
    """`compressor report PATH` means `compressor report render PATH`; subcommands win."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["render", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_DefaultRender)
def report() -> None:
    """Render, compare and merge reports.

    \b
      compressor report runs/qs                     # rewrite report.md + report.html
      compressor report runs/qs/report.json --format md --stdout
      compressor report compare old.json new.json   # faster, slower, less accurate
      compressor report merge pi.json nuc.json -o merged.json   # one column per device
    """


@report.command("render")
@click.argument("source", metavar="RUN_DIR_OR_JSON", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True,
              help="Formats to write (repeatable) [default: md and html].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write into [default: beside the report].")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the one --format to stdout instead of writing it.")
def render(source: Path, formats: tuple[str, ...], out_dir: Path | None, to_stdout: bool) -> None:
    """Regenerate report.md / report.html / report.json from a run folder or a report.json."""
    from compressor.report.model import load_report

    rep = load_report(source)
    src_dir = source if source.is_dir() else source.parent
    formats = formats or ("md", "html")
    if to_stdout:
        if len(formats) != 1:
            raise click.UsageError("--stdout prints exactly one --format")
        click.echo(_render(rep, formats[0], src_dir), nl=False)
        return
    out_dir = out_dir or src_dir
    for fmt in formats:
        path = out_dir / _FILES[fmt]  # json: the validated, normalised form (rewrites the input in place)
        _write(path, _render(rep, fmt, src_dir))
        click.echo(f"wrote {path}")


def _render(rep, fmt: str, base_dir: Path) -> str:  # type: ignore[no-untyped-def]
    if fmt == "md":
        from compressor.report.markdown import render_markdown

        return render_markdown(rep)
    if fmt == "html":
        from compressor.report.html import render_html

        return render_html(rep, base_dir)
    return json.dumps(rep.to_json(), indent=2) + "\n"


def _write(path: Path, text: str) -> None:
    from compressor.utils.io import atomic_write_text

    atomic_write_text(path, text)


@report.command("compare")
@click.argument("a", metavar="A.json", type=click.Path(exists=True, path_type=Path))
@click.argument("b", metavar="B.json", type=click.Path(exists=True, path_type=Path))
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=None,
              help="Noise allowance in multiples of the combined p50 standard error [default: 3].")
@click.option("--latency-floor", type=click.FloatRange(min=0), default=None,
              help="Changes under this percent count as the same [default: 5].")
def compare(a: Path, b: Path, latency_tolerance: float | None, latency_floor: float | None) -> None:
    """Side by side: what got faster, slower or less accurate from A to B."""
    from rich.table import Table

    from compressor.cli.render import console_for_output
    from compressor.report.combine import compare_reports
    from compressor.report.gates import DEFAULT_LATENCY_FLOOR, DEFAULT_LATENCY_TOLERANCE
    from compressor.report.model import load_report

    ra, rb = load_report(a), load_report(b)
    changes, only_a, only_b = compare_reports(
        ra, rb, tolerance=DEFAULT_LATENCY_TOLERANCE if latency_tolerance is None else latency_tolerance,
        floor=DEFAULT_LATENCY_FLOOR if latency_floor is None else latency_floor)
    console = console_for_output()
    if ra.recipe != rb.recipe:
        console.print(f"[yellow]note:[/] comparing recipe {ra.recipe!r} with {rb.recipe!r}", highlight=False)
    table = Table(title=f"A = {a}   B = {b}", title_justify="left")
    for col in ("variant@target", "p50 A ms", "p50 B ms", "change", "latency", "metric", "acc A", "acc B", "drop",
                "accuracy"):
        table.add_column(col, justify="left" if col in ("variant@target", "latency", "metric", "accuracy") else "right")
    colors = {"faster": "green", "slower": "red", "less accurate": "red", "more accurate": "green"}

    def f(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for c in changes:
        table.add_row(c.key, f(c.p50_a, ".3f"), f(c.p50_b, ".3f"), f(c.latency_change_pct, "+.1f") + "%"
                      if c.latency_change_pct is not None else "-",
                      f"[{colors.get(c.speed, 'default')}]{c.speed}[/]", c.metric or "-", f(c.acc_a, ".4f"),
                      f(c.acc_b, ".4f"), f(c.accuracy_drop, "+.2f"), f"[{colors.get(c.accuracy, 'default')}]{c.accuracy}[/]")
    console.print(table)
    for word, group in (("faster", [c.key for c in changes if c.speed == "faster"]),
                        ("slower", [c.key for c in changes if c.speed == "slower"]),
                        ("less accurate", [c.key for c in changes if c.accuracy == "less accurate"])):
        console.print(f"{word}: {', '.join(group) or 'none'}", highlight=False)
    if only_a:
        console.print(f"only in A: {', '.join(only_a)}", highlight=False)
    if only_b:
        console.print(f"only in B: {', '.join(only_b)}", highlight=False)


@report.command("merge")
@click.argument("sources", metavar="A.json B.json ...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The merged report.json; a .md beside it gets the per-device table.")
def merge(sources: tuple[Path, ...], out: Path) -> None:
    """Combine reports from several devices into one, with a latency column per device."""
    from rich.table import Table

    from compressor.cli.render import console_for_output
    from compressor.report.combine import device_table, merge_reports
    from compressor.report.markdown import render_markdown
    from compressor.report.model import load_report

    loaded = [((s / "report.json") if s.is_dir() else s, load_report(s)) for s in sources]
    merged = merge_reports(loaded, out)
    from compressor.utils.io import atomic_write_json

    atomic_write_json(out, merged.to_json())
    _write(out.with_suffix(".md"), render_markdown(merged))
    header, rows = device_table(merged)
    table = Table(*header, title=f"merged {len(loaded)} reports: {merged.recipe}", title_justify="left")
    for row in rows:
        table.add_row(*row)
    console_for_output().print(table)
    click.echo(f"wrote {out} and {out.with_suffix('.md')}")


@report.command("devices")
@click.argument("source", metavar="SWEEP_DIR_OR_JSON", type=click.Path(exists=True, path_type=Path))
def devices(source: Path) -> None:
    """Per device: the best variant of a `compressor sweep --devices` report, and what picking
    one variant for all devices costs on each (speedup lost, accuracy change)."""
    from rich.table import Table

    from compressor.cli.render import console_for_output
    from compressor.errors import ReportError
    from compressor.report.fleet import device_choice
    from compressor.report.model import load_report

    rep = load_report(source)
    units = (getattr(rep, "sweep", None) or {}).get("variants") or []
    if not any(u.get("device") for u in units):
        raise ReportError(f"{source}: not a sweep across devices (run `compressor sweep ... --devices all`)")
    choice = device_choice(rep, units)
    console = console_for_output()
    for target, t in choice["targets"].items():
        pick = t["one_for_all"]
        table = Table("device", "best variant", "speedup", "accuracy", "one-for-all speedup", "speedup lost",
                      "accuracy change", title=f"{target}: one variant for all = "
                      + (f"{pick['variant']} (worst loss {pick['worst_speedup_loss_pct']}%)" if pick
                         else "none (no variant passed the gates on every device)"), title_justify="left")
        for d in choice["devices"]:
            b, p = t["best"].get(d), (pick["per_device"][d] if pick else None)
            table.add_row(d, b["variant"] if b else "none passed", f"{b['speedup']}x" if b else "-",
                          str(b["accuracy"]) if b else "-", f"{p['speedup']}x" if p else "-",
                          f"{p['speedup_loss_pct']}%" if p else "-",
                          "-" if not p or p["accuracy_change"] is None else f"{p['accuracy_change']:+.4f}")
        console.print(table)
