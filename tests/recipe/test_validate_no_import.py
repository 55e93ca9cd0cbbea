"""`compressor validate` never imports factories: recipes' code runs only in `run`."""

from __future__ import annotations

import textwrap

import yaml
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from tests.reliability_fixtures import tiny_recipe_dict, write_tiny_model

_register()


def test_validate_does_not_run_factory_code(tmp_path):
    write_tiny_model(tmp_path)
    marker = tmp_path / "factory-ran"
    (tmp_path / "evil.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()   # runs on import


        def build():
            open({str(marker)!r}, "w").close()
    """))
    (tmp_path / "evil_data.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef load(split):\n    pass\n")
    r = tiny_recipe_dict()
    r["model"]["factory"] = "evil.py:build"
    r["data"]["source"] = {"factory": "evil_data.py:load"}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(r))
    res = CliRunner().invoke(cli, ["validate", str(recipe)])
    assert res.exit_code == 0, res.output
    assert "evil.py:build" in res.output
    assert not marker.exists()
    # control: `run` does import it (the factory is trusted code by design)
    CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / "run"), "-q"])
    assert marker.exists()


def test_validate_reports_factory_syntax_error_without_running(tmp_path):
    write_tiny_model(tmp_path)
    (tmp_path / "broken.py").write_text("def build(:\n")
    r = tiny_recipe_dict()
    r["model"]["factory"] = "broken.py:build"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    res = CliRunner().invoke(cli, ["validate", str(tmp_path / "r.yaml")])
    assert res.exit_code == 2 and "syntax error at line 1" in res.output
