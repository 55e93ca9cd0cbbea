"""A runtime that crashes or hangs fails only its own result: real child process, real signal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.targets.targets_fixtures import load_json, write_recipe

from compressor.cli.main import _register, cli
from compressor.targets.registry import RUNTIMES

CRASHY = '''
import os
import signal
import time

from compressor.targets.onnxruntime_cpu import OnnxRuntimeOptions, OnnxRuntimeTarget


class CrashyOptions(OnnxRuntimeOptions):
    mode: str


class CrashyTarget(OnnxRuntimeTarget):
    """ONNX Runtime, except that loading the model aborts, segfaults or hangs."""

    Options = CrashyOptions

    def load(self, artifact, *, threads):
        mode = self.options.mode
        if mode == "abort":
            os.abort()
        if mode == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "hang":
            time.sleep(600)
        return super().load(artifact, threads=threads)
'''


@pytest.fixture
def crashy(tmp_path, monkeypatch) -> Path:
    """A test-only runtime ``crashy`` and target files crash-abort / crash-segv / crash-hang."""
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "crashy_runtime.py").write_text(CRASHY)
    monkeypatch.syspath_prepend(str(mod_dir))  # the spawned child inherits sys.path
    monkeypatch.setitem(RUNTIMES, "crashy", "crashy_runtime:CrashyTarget")
    tdir = tmp_path / "targets"
    tdir.mkdir()
    for mode in ("abort", "segv", "hang"):
        (tdir / f"crash-{mode}.yaml").write_text(textwrap.dedent(f"""\
            name: crash-{mode}
            runtime: crashy
            options: {{mode: {mode}, graph_optimization_level: all}}
            """))
    return tmp_path


@pytest.mark.slow
def test_crash_and_hang_fail_only_their_target(crashy, tt_model_dir):
    recipe = write_recipe(crashy, tt_model_dir, ["crash-abort", "onnxruntime-cpu", "crash-segv", "crash-hang"],
                          quantize=False, benchmark={"timeout_s": 5})
    _register()
    res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(crashy / "run"), "-q"])
    assert res.exit_code == 1, res.output
    report = load_json(crashy / "run" / "report.json")
    rows = {r["target"]: r for r in report["results"]}
    assert rows["onnxruntime-cpu"]["status"] == "ok"
    assert rows["onnxruntime-cpu"]["latency_ms"]["p50"] > 0
    assert rows["crash-abort"]["status"] == "failed"
    assert "crashed with signal 6 (SIGABRT)" in rows["crash-abort"]["error"]
    assert "crashed with signal 11 (SIGSEGV)" in rows["crash-segv"]["error"]
    assert "timed out after 5 s" in rows["crash-hang"]["error"]
    assert (crashy / "run" / "report.md").exists()


def test_isolate_false_runs_in_process(tmp_path, tt_model_dir):
    from compressor.pipeline import run_recipe
    from compressor.recipe import load_recipe

    recipe = write_recipe(tmp_path, tt_model_dir, ["onnxruntime-cpu"], quantize=False,
                          benchmark={"isolate": False})
    report = run_recipe(load_recipe(recipe), recipe_path=recipe, run_dir=tmp_path / "run")
    (row,) = report.results
    assert row.status == "ok" and row.device["runtime"] == "onnxruntime"
