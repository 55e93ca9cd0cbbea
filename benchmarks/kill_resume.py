"""kill -9 a real `compressor run` at many named points, resume each, and check that
no finished work was redone and the report is identical (timings aside).

    nice python benchmarks/kill_resume.py

Uses the tiny torch recipe of tests/reliability_fixtures.py (factory + safetensors
weights -> ONNX -> static INT8 -> ONNX Runtime). Writes benchmarks/out/kill_resume.json
and the "kill-resume" section of benchmarks/results/reliability.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from benchmarks.results_md import update_section  # noqa: E402
from tests.reliability.resume_harness import kill_and_resume, run_cli  # noqa: E402
from tests.reliability_fixtures import write_tiny_recipe  # noqa: E402

POINTS = [
    "run:start", "atomic:baseline.onnx", "written:export:baseline", "done:export:baseline",
    "atomic:00-quantize.onnx", "written:step:00-quantize", "done:step:00-quantize", "reference:done",
    "written:bench:baseline:*", "done:bench:baseline:*", "done:bench:compressed:*", "atomic:report.json",
    "report:json",
]


def main() -> None:
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    recipe = write_tiny_recipe(work / "model")
    ref = run_cli(recipe, work / "reference")
    if ref.returncode:
        sys.exit(f"reference run failed: {ref.stderr[-2000:]}")
    reference = json.loads((work / "reference" / "report.json").read_text())
    rows = []
    for point in POINTS:
        r = kill_and_resume(recipe, work / point.replace(":", "_").replace("*", "x"), point, reference)
        r["ok"] = (r["killed"] and r["resume_rc"] == 0 and r["identical_report"] and not r["redone_finished"]
                   and not r["corrupt_files"] and len(r["reused"]) == r["finished_before_kill"])
        rows.append(r)
        print(f"{point:28s} killed={r['killed']} finished={r['finished_before_kill']} reused={len(r['reused'])} "
              f"redone={len(r['redone_finished'])} identical={r['identical_report']} ok={r['ok']}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.perf_counter() - t0)
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / "kill_resume.json").write_text(json.dumps(rows, indent=2))
    good = sum(r["ok"] for r in rows)
    table = ["| kill point | killed | finished before kill | reused on resume | finished work redone | identical report |",
             "|---|---|---:|---:|---:|---|"]
    table += [f"| `{r['kill_at']}` | {'yes' if r['killed'] else 'no'} | {r['finished_before_kill']} | {len(r['reused'])} "
              f"| {len(r['redone_finished'])} | {'yes' if r['identical_report'] else 'NO'} |" for r in rows]
    body = "\n".join([
        f"Command: `nice python benchmarks/kill_resume.py` ({seconds} s).", "",
        f"**{len(rows)} kill points, {good} resumed with no finished work redone, no corrupt file and an identical "
        "report.** \"Identical\" means equal after removing timestamps, step durations, `cached` flags, latency, "
        "throughput and the latency-based gates (`compressor.report.combine.comparable_report`).", "", *table,
    ])
    update_section("kill-resume", "kill -9 and --resume", body)
    print(body)
    sys.exit(0 if good == len(rows) else 1)


if __name__ == "__main__":
    main()
