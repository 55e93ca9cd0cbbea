"""`compressor device probe [--out FILE]`: measure this device's INT8 kernels into a profile."""

from __future__ import annotations

import json
from pathlib import Path

import click

from compressor.cli.group import cli


@cli.group()
def device() -> None:
    """The device a model deploys to."""


@device.command("probe")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the profile here (a target file or recipe names it: device: FILE).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per session (default: min(4, cores)).")
@click.option("--rounds", type=click.IntRange(2), default=8, show_default=True,
              help="Interleaved timing rounds per layer.")
@click.option("--openvino/--no-openvino", default=None, help="Also time OpenVINO (default: when installed).")
def probe(out: Path | None, threads: int | None, rounds: int, openvino: bool | None) -> None:
    """Time each INT8 format against FP32 on a few representative layers, check whether the
    INT8 kernels saturate, and measure the INT8:FP32 multiply-add rate (torch-free; well under a
    minute). Run it on the device itself; copy the profile to where you compile."""
    from compressor.bench.probe import probe as run_probe
    from compressor.bench.probe import summary
    from compressor.utils.io import atomic_write_json

    profile = run_probe(threads=threads, rounds=rounds, openvino=openvino, log=lambda m: click.echo(m, err=True))
    for line in summary(profile):
        click.echo(line)
    if out is not None:
        atomic_write_json(out, profile)
        click.echo(f"profile: {out} (name it in a target file or recipe: device: {out})")
    else:
        click.echo(json.dumps(profile, indent=2))
