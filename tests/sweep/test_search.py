"""`compressor sweep --search optuna` on a local Ray, its driver killed (kill -9 of its
process group) after the first trial finished, then resumed: every trial once, none lost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.sweep.ray_nodes import REPO, cluster_env, drive_until_first_variant

optuna = pytest.importorskip("optuna")
pytest.importorskip("ray")

SPACE = ["steps[0].quantize.calibration=minmax,percentile", "steps[0].quantize.per_channel=true,false",
         "data.calibration.samples=int:32:128"]


def _trials(out) -> dict[int, tuple[str, dict]]:
    from compressor.sweep.search import STUDY

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return {t.number: (t.state.name, t.params) for t in study.get_trials(deepcopy=False)}


@pytest.mark.slow  # ~60 s on 2 loaded cores: 3 trials, two driver starts
def test_search_resumes_after_kill_9_with_no_trial_lost_or_repeated(tiny_recipe, tmp_path, cli):
    out = tmp_path / "search"
    args = [sys.executable, "-m", "compressor", "sweep", str(tiny_recipe), "--out", str(out), "--num-cpus", "1",
            "--search", "optuna", "--trials", "3", *[a for s in SPACE for a in ("--space", s)]]
    env = {**cluster_env(), "RAY_AUTH_MODE": "disabled"}
    finished = [p.parent for p in drive_until_first_variant(args, env, out)]
    assert finished, "no trial finished before the deadline"
    assert not (out / "report.json").exists()
    before = _trials(out)
    assert 1 <= len(before) <= 3  # asked before the kill
    assert any(state == "RUNNING" for state, _ in before.values())  # the kill left a trial unfinished
    marks = {p.name: ((p / "report.json").stat().st_mtime_ns, (p / "sweep_attempts.jsonl").read_text())
             for p in finished}
    res = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    after = _trials(out)
    # exactly --trials trials, numbered 0..2: a running trial was finished, not asked again
    assert sorted(after) == [0, 1, 2]
    assert all(after[n][1] == params for n, (_, params) in before.items() if params)
    assert {state for state, _ in after.values()} <= {"COMPLETE", "PRUNED"}
    # a trial that had finished was told from its report, not run again
    assert all(((out / "variants" / n / "report.json").stat().st_mtime_ns,
                (out / "variants" / n / "sweep_attempts.jsonl").read_text()) == m for n, m in marks.items())
    report = json.loads((out / "report.json").read_text())
    search = report["sweep"]["search"]
    assert [t["number"] for t in search["trials"]] == [0, 1, 2]
    complete = {t["number"] for t in search["trials"] if t["state"] == "complete"}
    assert complete and set(search["pareto_trials"]) <= complete
    for t in search["trials"]:
        if t["state"] == "complete":
            row = next(r for r in report["results"] if r["variant"] == f"{t['variant']}/compressed")
            assert t["values"] == {"accuracy": row["accuracy"]["value"], "latency": row["latency_ms"]["p50"]}
    ran = {v["name"] for v in report["sweep"]["variants"]}
    assert ran == {t["variant"] for t in search["trials"] if t["state"] == "complete"}
    assert "Search history" in (out / "report.html").read_text()
    assert "| trial | state | settings | accuracy | latency | Pareto |" in (out / "report.md").read_text()
    # another search in the same folder is refused
    res = cli("sweep", tiny_recipe, "--out", out, "--resume", "--search", "optuna", "--trials", "4",
              *[a for s in SPACE for a in ("--space", s)])
    assert res.exit_code == 2 and "holds a sweep of other variants" in res.output
