"""The ``compressor`` click group. Command modules register on it; it imports none of them,
so ``cli/main.py`` -> command modules -> ``cli/group.py`` has no cycle."""

from __future__ import annotations

import traceback

import click

from compressor.errors import CompressorError
from compressor.utils.versions import COMPRESSOR_VERSION


class CompressorGroup(click.Group):
    """Maps CompressorError to ``Error: ...`` and its exit code (traceback with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CompressorError as e:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted; finished artifacts are kept (re-run with --resume to continue)", err=True)
            ctx.exit(130)


@click.group(cls=CompressorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(COMPRESSOR_VERSION, prog_name="compressor")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Distill, prune and INT8-quantize trained models, export them via ONNX to
    deployment targets, and benchmark every target against the original model.

    \b
    Typical use:
      compressor validate recipes/quickstart.yaml
      compressor run recipes/quickstart.yaml --out runs/qs
      compressor check runs/qs/report.json --max-accuracy-drop 0.5
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
