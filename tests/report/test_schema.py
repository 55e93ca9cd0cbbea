"""The shipped report JSON Schema matches the models, documents every field, and real reports validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.report.model import SCHEMA_FILE, Report, report_json_schema
from tests.report.conftest import make_report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def _properties(schema: dict) -> set[str]:
    names = set(schema.get("properties", {}))
    for sub in schema.get("$defs", {}).values():
        names |= set(sub.get("properties", {}))
    return names


def test_shipped_schema_is_generated_from_the_models():
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert shipped == report_json_schema(), "regenerate: python -m compressor.report.model"


def test_every_field_is_documented():
    docs = DOCS.read_text(encoding="utf-8")
    missing = sorted(n for n in _properties(report_json_schema()) if f"`{n}`" not in docs)
    assert not missing, f"docs/report.md does not document {missing}"


def validate(data: dict) -> None:
    """Validate with jsonschema when installed (it is optional), else through the pydantic model."""
    try:
        import jsonschema
    except ImportError:
        Report.model_validate(data)
        return
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_reports_validate_against_the_schema():
    validate(make_report(gate_limits={"max_accuracy_drop": 0.5}).to_json())
    bad = make_report().to_json()
    bad["results"][0]["latency_ms"]["p50"] = "slow"
    with pytest.raises(_validation_errors(), match="p50|'slow'"):
        validate(bad)


def _validation_errors() -> tuple[type[Exception], ...]:
    """What :func:`validate` raises for an invalid report: pydantic's error, or jsonschema's."""
    import pydantic

    try:
        import jsonschema
    except ImportError:
        return (pydantic.ValidationError,)
    return (pydantic.ValidationError, jsonschema.ValidationError)


def test_ci_example_workflow_runs_recipe_and_gate():
    import yaml

    wf = yaml.safe_load((DOCS.parents[1] / "examples" / "ci" / "github-actions.yml").read_text(encoding="utf-8"))
    steps = " ".join(s.get("run", "") for s in wf["jobs"]["gate"]["steps"])
    assert "pull_request" in wf[True] if True in wf else "pull_request" in wf["on"]  # YAML 1.1 reads `on` as True
    assert "make setup" in steps and "compressor run" in steps and "compressor check" in steps and "--junit" in steps
