"""report.json, schema_version 1 (see README, "report.json reference")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compressor.errors import ReportError

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # reports from newer minor versions may add fields: keep them, do not fail
    model_config = ConfigDict(extra="allow")


class Accuracy(_Model):
    metric: str
    value: float
    higher_is_better: bool = True
    samples: int | None = None


class Latency(_Model):
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float | None = None
    max: float | None = None
    cv: float | None = None
    n: int | None = None


class Parity(_Model):
    max_abs_diff: float
    cosine: float | None = None
    top1_agreement: float | None = None
    tolerance: float | None = None
    passed: bool | None = None


class Result(_Model):
    variant: str
    target: str
    precision: str
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    accuracy: Accuracy | None = None
    latency_ms: Latency | None = None
    throughput_per_s: float | None = None
    size_bytes: int | None = None
    parity: Parity | None = None
    artifact: str | None = None
    device: dict[str, Any] | None = None


class GateResult(_Model):
    name: str
    limit: float
    value: float | None
    passed: bool
    detail: str = ""


class Report(_Model):
    schema_version: int = SCHEMA_VERSION
    recipe: str
    created: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    results: list[Result] = Field(default_factory=list)
    gates: list[GateResult] = Field(default_factory=list)

    def result(self, variant: str, target: str) -> Result | None:
        return next((r for r in self.results if r.variant == variant and r.target == target), None)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def load_report(path: str | Path) -> Report:
    """Read and validate a report.json (or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ReportError(f"report {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path} is not valid JSON ({e}); it may be truncated", hint="re-run the benchmark") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} is not a report (expected a JSON object)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(f"{path} has schema_version {version!r}; this compressor reads schema_version {SCHEMA_VERSION}")
    try:
        return Report.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ReportError(f"{path} is not a valid report: {loc}: {err['msg']}") from None
