"""Kill a real `compressor run` mid-training, then `--resume` it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.prune_fixtures import recipe_dict, write_model, write_recipe

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 8


@pytest.mark.slow
def test_resume_continues_after_the_last_finished_epoch(tmp_path):
    src, weights = write_model(tmp_path, width=48)
    steps = [{"prune": {"ratio": 0.5}},
             {"finetune": {"epochs": EPOCHS, "batch_size": 32, "lr": 1e-3, "eval_samples": 100,
                           "threads": 1}}]
    recipe = recipe_dict(src, weights, steps, factory_kwargs={"width": 48})
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "compressor", "run", str(path), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    history = out / "checkpoints" / "01-finetune" / "history.json"

    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 45
    while not (history.exists() and json.loads(history.read_text())) and time.monotonic() < deadline:
        assert first.poll() is None, first.communicate()[0]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    done_before = len(json.loads(history.read_text()))
    assert 1 <= done_before < EPOCHS
    assert not (out / "report.json").exists()

    second = subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    report = json.loads((out / "report.json").read_text())
    prune, finetune = (s for s in report["steps"] if s["kind"] in ("prune", "finetune"))
    assert prune["cached"] is True  # restored from its finished marker, channel counts included
    rows = finetune["details"]["history"]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))  # every epoch exactly once
    assert finetune["details"]["resumed_from_epoch"] == done_before
    assert {r["pid"] for r in rows[:done_before]} == {first.pid}  # finished epochs were not redone
    assert first.pid not in {r["pid"] for r in rows[done_before:]}
