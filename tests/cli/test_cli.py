"""The CLI contract: help, validate, run end to end, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_help_does_not_import_torch():
    code = ("import sys; from compressor.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "Usage: compressor" in out
    assert "HEAVY []" in out


def test_python_dash_m_works():
    res = subprocess.run([sys.executable, "-m", "compressor", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0
    assert "compressor, version" in res.stdout


@pytest.mark.parametrize("cmd", [["run"], ["validate"], ["bench"], ["check"], ["recipe", "schema"], ["targets", "list"]])
def test_every_command_has_help(cli, cmd):
    res = cli(*cmd, "--help")
    assert res.exit_code == 0
    assert "Usage:" in res.output


def test_recipe_schema_is_json(cli):
    res = cli("recipe", "schema")
    schema = json.loads(res.output)
    assert schema["title"] == "Recipe"


def test_validate_prints_resolved_recipe(cli, tiny_recipe):
    res = cli("validate", tiny_recipe)
    assert res.exit_code == 0, res.output
    assert "name: tiny" in res.output
    assert "per_channel: true" in res.output  # a default filled in


def test_validate_misspelled_key_exit_2_with_line(cli, write_recipe):
    p = write_recipe(replace={"calibration: minmax": "calibraton: minmax"})
    res = cli("validate", p)
    assert res.exit_code == 2
    assert res.output.startswith("Error: ")
    assert "r.yaml:11: steps[0].quantize.calibraton: unknown key" in res.output
    assert "Traceback" not in res.output


def test_validate_never_imports_the_factory(cli, write_recipe, tmp_path):
    marker = tmp_path / "factory_was_imported"
    factory = tmp_path / "evil.py"
    factory.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef build():\n    pass\n")
    p = write_recipe(replace={"tiny.py:build": "x", "factory: ": f"factory: {factory}:build  #"})
    res = cli("validate", p)
    assert res.exit_code == 0, res.output
    assert not marker.exists()


def test_validate_missing_weights(cli, write_recipe):
    p = write_recipe(replace={"tiny.safetensors": "missing.safetensors"})
    res = cli("validate", p)
    assert res.exit_code == 2
    assert "model.weights" in res.output and "does not exist" in res.output


def test_unknown_target_lists_valid_ones(cli, write_recipe):
    p = write_recipe(replace={"targets: [onnxruntime-cpu]": "targets: [onnxruntime-gpu9000]"})
    res = cli("validate", p)
    assert res.exit_code == 2
    assert "unknown target 'onnxruntime-gpu9000'" in res.output
    assert "onnxruntime-cpu" in res.output


def test_targets_list_shows_usability(cli):
    res = cli("targets", "list")
    assert res.exit_code == 0
    assert "onnxruntime-cpu" in res.output and "yes" in res.output


def test_check_requires_a_gate(cli, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema_version": 1, "recipe": "r", "results": []}))
    res = cli("check", report)
    assert res.exit_code == 2
    assert "no gates" in res.output


def test_check_truncated_report_exit_2(cli, tmp_path):
    report = tmp_path / "report.json"
    report.write_text('{"schema_version": 1, "recipe": "r", "resu')
    res = cli("check", report, "--max-accuracy-drop", "1")
    assert res.exit_code == 2
    assert "not valid JSON" in res.output
