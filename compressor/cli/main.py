"""The ``compressor`` command. Commands only parse options, build objects and call
the library; heavy modules are imported inside the commands so ``--help`` is fast."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from compressor import __version__
from compressor.errors import CompressorError


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
@click.version_option(__version__, prog_name="compressor")
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


def _register() -> None:
    from compressor.cli import commands  # noqa: F401  (defines the commands on `cli`)
    from compressor.cli import report  # noqa: F401  (report render|compare|merge)
    from compressor.cli import inspect  # noqa: F401
    from compressor.cli import targets_cli  # noqa: F401  (targets trt-check)


def main(argv: list[str] | None = None) -> None:
    _register()
    cli.main(args=argv, prog_name="compressor")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])


__all__ = ["cli", "main", "Path"]
