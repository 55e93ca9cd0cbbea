"""Run `python -m compressor run` in a subprocess, kill it at a named point, resume it,
and compare reports (used by tests/reliability/test_resume.py and benchmarks/kill_resume.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from compressor.report.combine import comparable_report

ROOT = Path(__file__).resolve().parents[2]


def run_cli(recipe: Path, out: Path, *, kill_at: str | None = None, resume: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COMPRESSOR_TEST_KILL_AT", None)
    if kill_at:
        env["COMPRESSOR_TEST_KILL_AT"] = kill_at
    cmd = [sys.executable, "-m", "compressor", "run", str(recipe), "--out", str(out), "-q"]
    if resume:
        cmd.append("--resume")
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def finished_keys(run_dir: Path) -> set[str]:
    """Keys of the work recorded as finished (cache records present)."""
    return {p.stem for p in (run_dir / "cache").glob("*.json")} if (run_dir / "cache").is_dir() else set()


def half_written(run_dir: Path) -> list[str]:
    """Leftover temporary files (an interrupted atomic write), and JSON files that do not parse."""
    bad = [str(p.relative_to(run_dir)) for p in run_dir.rglob(".*.tmp")]
    for p in run_dir.rglob("*.json"):
        try:
            json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad.append(str(p.relative_to(run_dir)))
    return bad


def kill_and_resume(recipe: Path, out: Path, kill_at: str, reference: dict[str, Any]) -> dict[str, Any]:
    """Kill at ``kill_at``, resume, and say what happened."""
    first = run_cli(recipe, out, kill_at=kill_at)
    killed = first.returncode == -signal.SIGKILL
    before = finished_keys(out)
    leftovers = [p for p in half_written(out) if not p.endswith(".tmp")]  # .tmp leftovers are expected; JSON must parse
    second = run_cli(recipe, out, resume=True)
    log = json.loads((out / "work_log.json").read_text()) if (out / "work_log.json").is_file() else []
    redone = [e["work"] for e in log if not e["reused"] and e["key"] in before]
    reused = [e["work"] for e in log if e["reused"]]
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else None
    identical = report is not None and comparable_report(report) == comparable_report(reference)
    return {"kill_at": kill_at, "killed": killed, "finished_before_kill": len(before), "reused": reused,
            "redone_finished": redone, "resume_rc": second.returncode, "identical_report": identical,
            "corrupt_files": leftovers, "stderr": second.stderr[-2000:] if second.returncode else ""}
