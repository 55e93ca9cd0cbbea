"""`compressor targets trt-check MODEL.onnx`: TensorRT explicit-quantization readiness."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from compressor.cli.commands import targets


@targets.command("trt-check")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def trt_check(model: Path, as_json: bool) -> None:
    """Check that a QDQ MODEL follows TensorRT's INT8 rules (runs without TensorRT).

    Exit code 0 when it does, 1 when a rule is broken, 2 when MODEL is unreadable.
    """
    from compressor.targets.trt_check import check_trt_ready

    result = check_trt_ready(model)
    if as_json:
        click.echo(json.dumps({"model": result.path, "ok": result.ok, "opset": result.opset,
                               "qdq_nodes": result.qdq_nodes, "problems": result.problems}, indent=2))
    else:
        for p in result.problems:
            click.echo(f"- {p}")
        verdict = "trt-ready" if result.ok else f"NOT trt-ready ({len(result.problems)} problem(s))"
        click.echo(f"{model}: {verdict}; opset {result.opset}, {result.qdq_nodes} Q/DQ nodes")
    if not result.ok:
        sys.exit(1)
