"""The layering of docs/architecture.md holds: `lint-imports` checks the contracts in
pyproject.toml (layers, no cycles, steps without targets, report without runtimes,
bench and the targets' runtime path without torch), and the module map lists every module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    assert exe.is_file(), f"import-linter is not installed next to {sys.executable} (requirements.lock pins it)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # analyse this checkout, not an installed copy
    res = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout, res.stdout[-3000:]


def _modules() -> set[str]:
    out = set()
    for p in (ROOT / "compressor").rglob("*.py"):
        rel = p.relative_to(ROOT).as_posix()
        if "__pycache__" not in rel:
            out.add(rel)
    return out


def test_module_map_lists_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^- `(compressor/[\w/]+\.py)`", text, re.M))
    modules = _modules()
    assert not modules - listed, f"add a line to docs/architecture.md for: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/architecture.md lists modules that do not exist: {sorted(listed - modules)}"
