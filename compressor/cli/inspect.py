"""``compressor inspect MODEL``: what a model file is, without executing it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from compressor.cli.group import cli
from compressor.errors import ModelLoadError


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@cli.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.option("--tensors", "show_tensors", type=int, default=10, show_default=True,
              help="List at most this many tensors in the text output.")
def inspect_cmd(model: Path, as_json: bool, show_tensors: int) -> None:
    """Report what MODEL is (format, tensors, ops, opset, external data) without
    executing anything in it. Exit 2 when loading it would run code or read outside
    its folder."""
    from compressor.models.inspect import inspect_model

    info = inspect_model(model)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _print_text(info, show_tensors)
    if info["unsafe"]:
        if as_json:
            sys.exit(2)
        raise ModelLoadError(f"{model} is unsafe to load: {info['unsafe'][0].removeprefix('unsafe: ')}",
                             hint="do not unpickle it; if you trust its source, convert it to safetensors in an "
                                  "isolated environment (safetensors.torch.save_file(state_dict, 'model.safetensors'))")


def _print_text(info: dict, show_tensors: int) -> None:
    click.echo(f"file:      {info['path']} ({_fmt_bytes(info['size_bytes'])})")
    click.echo(f"format:    {info['format']}")
    if "opset" in info:
        click.echo("opset:     " + ", ".join(f"{k} {v}" for k, v in info["opset"].items()))
        for kind in ("inputs", "outputs"):
            click.echo(f"{kind + ':':<10} " + "; ".join(f"{v['name']} {v['dtype']}{v['shape']}" for v in info[kind]))
        click.echo("ops:       " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()))
        ext = info["external_data"]
        if ext["locations"]:
            click.echo(f"external:  {', '.join(ext['locations'])} ({'inside the model folder' if ext['safe'] else 'REFUSED'})")
    if "tensor_count" in info:
        click.echo(f"tensors:   {info['tensor_count']} ({info['parameters']:,} parameters, "
                   f"{_fmt_bytes(info['tensor_bytes'])})")
        for t in info["tensors"][:show_tensors]:
            click.echo(f"  {t['name']}: {t['dtype']} {t['shape']}")
        if info["tensor_count"] > show_tensors:
            click.echo(f"  ... {info['tensor_count'] - show_tensors} more (--tensors N)")
    if info.get("globals"):
        click.echo("pickle imports: " + ", ".join(info["globals"]))
    if info.get("note"):
        click.echo(f"note:      {info['note']}")
    for u in info["unsafe"]:
        click.echo(f"finding:   {u}")
    click.echo(f"safe:      {'yes' if info['safe'] else 'no'}")
