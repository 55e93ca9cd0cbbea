"""The ``compressor`` command. Commands only parse options, build objects and call
the library; heavy modules are imported inside the commands so ``--help`` is fast."""

from __future__ import annotations

import sys

from compressor.cli.group import cli


def _register() -> None:
    from compressor.cli import commands  # noqa: F401  (defines the commands on `cli`)
    from compressor.cli import report  # noqa: F401  (report render|compare|merge)
    from compressor.cli import inspect  # noqa: F401
    from compressor.cli import targets_cli  # noqa: F401  (targets trt-check)
    from compressor.cli import sweep_cli  # noqa: F401  (sweep)
    from compressor.cli import device_cli  # noqa: F401  (device probe)


def main(argv: list[str] | None = None) -> None:
    _register()
    cli.main(args=argv, prog_name="compressor")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])


__all__ = ["cli", "main"]
