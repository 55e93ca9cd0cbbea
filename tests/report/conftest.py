"""Small synthetic-but-valid reports for report/gate tests (the report logic, not measurement)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compressor.report.model import Report, Result


def make_result(variant: str, target: str = "onnxruntime-cpu", *, p50: float = 1.0, acc: float | None = 0.90,
                metric: str = "top1", size: int = 1000, rse: float | None = 0.005, precision: str | None = None,
                samples: str | None = None, host: str | None = None) -> Result:
    higher = metric != "mse"
    return Result.model_validate({
        "variant": variant, "target": target, "precision": precision or ("fp32" if variant == "baseline" else "int8"),
        "accuracy": None if acc is None else {"metric": metric, "value": acc, "higher_is_better": higher, "samples": 100},
        "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.5, "mean": p50 * 1.05, "std": p50 * 0.1,
                       "min": p50 * 0.9, "max": p50 * 2, "cv": 0.1, "n": 200, "p50_rse": rse},
        "throughput_per_s": 1000 / p50, "size_bytes": size, "latency_samples": samples, "host": host,
    })


def make_report(*, recipe: str = "demo", base_p50: float = 2.0, comp_p50: float = 1.0, base_acc: float = 0.90,
                comp_acc: float = 0.895, metric: str = "top1", rse: float | None = 0.005, host: str = "box",
                gate_limits: dict | None = None, samples: bool = False) -> Report:
    return Report(recipe=recipe, created="2026-01-01T00:00:00+00:00",
                  environment={"cpu": "test cpu", "host": host, "threads": 2, "runtimes": {"onnxruntime": "1"}},
                  results=[make_result("baseline", p50=base_p50, acc=base_acc, metric=metric, size=4000, rse=rse,
                                       samples="baseline.latency.json" if samples else None),
                           make_result("compressed", p50=comp_p50, acc=comp_acc, metric=metric, size=1000, rse=rse,
                                       samples="compressed.latency.json" if samples else None)],
                  gate_limits=gate_limits)


def write_report(report: Report, folder: Path, name: str = "report.json", samples: bool = False) -> Path:
    """Write ``report`` (and, with ``samples``, synthetic raw samples drawn around each p50) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(report.to_json()), encoding="utf-8")
    if samples:
        rng = np.random.default_rng(0)
        for r in report.results:
            if r.latency_samples:
                data = r.latency_ms.p50 * (1 + 0.05 * rng.standard_normal(200))
                (folder / r.latency_samples).write_text(json.dumps(data.tolist()), encoding="utf-8")
    return path


@pytest.fixture
def cli_runner():
    from click.testing import CliRunner

    from compressor.cli.main import _register, cli

    _register()
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args])
