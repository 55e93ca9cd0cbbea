"""kill -9 a `compressor sweep --search optuna` driver (its whole process group: the driver
and the local Ray it started) after some trials finished, `--resume` it, and check that the
study ends with exactly --trials trials: none lost (a trial running at the kill is finished
under its own number and parameters), none repeated (a finished trial is not run again).

    nice python benchmarks/search_kill_resume.py                 # 12 trials, kill after 4

Writes the "search-kill-resume" section of benchmarks/results/sweep.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout (and examples/) on sys.path

from benchmarks._search_recipe import SPACE, space_args, write_search_recipe  # noqa: E402
from benchmarks.results_md import update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sweep.md"


def _trials(out: Path) -> dict[int, tuple[str, dict]]:
    import optuna

    from compressor.sweep.search import STUDY

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return {t.number: (t.state.name, t.params) for t in optuna.load_study(study_name=STUDY, storage=storage).trials}


def _marks(out: Path) -> dict[str, tuple[int, str]]:
    return {p.parent.name: (p.stat().st_mtime_ns, (p.parent / "sweep_attempts.jsonl").read_text())
            for p in out.glob("variants/*/report.json")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--kill-after", type=int, default=4, help="finished trials before the kill")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="search-kill-"))
    recipe = write_search_recipe(work / "model")
    out = work / "search"
    cmd = [sys.executable, "-m", "compressor", "sweep", str(recipe), "--out", str(out), "--search", "optuna",
           "--trials", str(args.trials), *space_args()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    driver = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while len(_marks(out)) < args.kill_after and driver.poll() is None:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    killed_at = time.perf_counter() - t0
    before, marks = _trials(out), _marks(out)
    res = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True)
    total = time.perf_counter() - t0
    after = _trials(out)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    search = report.get("sweep", {}).get("search", {})
    redone = [n for n, m in marks.items() if (out / "variants" / n / "report.json").stat().st_mtime_ns != m[0]
              or (out / "variants" / n / "sweep_attempts.jsonl").read_text() != m[1]]
    changed = [n for n, (_, p) in before.items() if p and after.get(n, ("", {}))[1] != p]
    states = [s for s, _ in after.values()]
    ok = (res.returncode == 0 and sorted(after) == list(range(args.trials)) and not redone and not changed
          and "RUNNING" not in states)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.*)", cpu)
    isa = sorted(set(re.findall(r"avx512_vnni|avx2|amx_int8", cpu)))
    body = f"""`nice python benchmarks/search_kill_resume.py --trials {args.trials} --kill-after {args.kill_after}`
on {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {model.group(1) if model else '?'}, {os.cpu_count()} cores
({', '.join(isa)}), load average {os.getloadavg()[0]:.1f}.

Search space: {', '.join(f'`{s}`' for s in SPACE)}; objectives accuracy, p50 latency, size (TPE).
The driver was killed (SIGKILL to its process group) {killed_at:.0f} s in, with {len(marks)} trial(s)'
report.json written and {len(before)} trial(s) asked ({sum(s == 'RUNNING' for s, _ in before.values())} running);
`--resume` finished at {total:.0f} s (exit code {res.returncode}).

| | result |
|---|---|
| trials in the study after resume | {len(after)} (numbers {min(after, default='-')}..{max(after, default='-')}) |
| states | {', '.join(f'{states.count(s)} {s.lower()}' for s in sorted(set(states)))} |
| trials finished before the kill and run again | {len(redone)} |
| trials asked before the kill whose parameters changed | {len(changed)} |
| Pareto trials | {', '.join(map(str, search.get('pareto_trials', []))) or '-'} |

**{'Met' if ok else 'MISSED'}: every trial once, none lost or repeated.**
"""
    print(body)
    if res.returncode:
        print(res.stdout[-3000:], res.stderr[-3000:])
    update_section("search-kill-resume", "Optuna search: kill -9 of the driver and --resume", body, RESULTS)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
