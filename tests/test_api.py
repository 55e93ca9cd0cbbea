"""The public Python API: the documented example runs as written (paths pointed at the tiny
recipe), and check() returns verdicts that can fail."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- test: api-example -->"


def _examples() -> list[tuple[str, str]]:
    """Every python block marked MARK in README.md and docs/*.md, as (file, code)."""
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for m in re.finditer(re.escape(MARK) + r"\s*```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            out.append((doc.name, m.group(1)))
    return out


def test_the_api_is_documented_with_a_runnable_example():
    assert any(name == "api.md" for name, _ in _examples()), f"docs/api.md has no block marked {MARK}"


@pytest.mark.slow
@pytest.mark.parametrize("doc,code", _examples(), ids=lambda x: x if x.endswith(".md") else "")
def test_documented_example_runs(doc, code, tiny_recipe, tmp_path):
    assert '"recipes/quickstart.yaml"' in code and '"runs/qs"' in code, "the example should run the quickstart"
    code = code.replace('"recipes/quickstart.yaml"', repr(str(tiny_recipe))).replace('"runs/qs"', repr(str(tmp_path / "qs")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "baseline onnxruntime-cpu fp32 ok" in res.stdout and "PASS max_accuracy_drop" in res.stdout, res.stdout
    assert (tmp_path / "qs" / "report.json").is_file()

    # the same run through the API: a gate that cannot hold fails, and a report path works too
    import compressor
    from compressor.errors import ReportError

    verdict = compressor.check(tmp_path / "qs" / "report.json", min_speedup=1000.0)
    assert not verdict.passed and verdict.exit_code == 1
    assert {g.name for g in verdict.failed} == {"min_speedup"}
    assert compressor.check(tmp_path / "qs", max_size_bytes=10**12).passed
    with pytest.raises(TypeError, match="min_sppedup"):
        compressor.check(tmp_path / "qs", min_sppedup=2.0)
    with pytest.raises(ReportError):
        compressor.check(tmp_path / "missing.json")
