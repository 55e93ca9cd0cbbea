"""Sweep overhead: `compressor sweep` (local Ray) against the same variants run one after
another with `compressor run`, wall-clock, alternating which goes first.

    nice python benchmarks/sweep_overhead.py                 # tiny recipe (tests' digits CNN), 2 variants
    nice python benchmarks/sweep_overhead.py --recipe recipes/quickstart.yaml --repeats 1
    nice python benchmarks/sweep_overhead.py --search 12     # an Optuna search of 12 trials

With ``--search N``: `compressor sweep --search optuna --trials N` (prune ratio x calibration
x per-channel on the tests' digits CNN, pruned, fine-tuned and quantized) against the same
N trials' recipes run one after another by `compressor.api.run` in one fresh process (so
imports count once on both sides); writes the "search-overhead" section.

Both sides run the same recipes (each variant written out as a YAML file for `compressor
run`), each in a fresh process, so imports and Ray start-up count. The sweep also reuses
the steps its variants share (the baseline export here): the number reported is the
whole difference, and the run time of the shared work is in the sweep's report. Writes
the "sweep-overhead" section of benchmarks/results/sweep.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from benchmarks.results_md import update_section  # noqa: E402
from compressor.recipe import load_recipe  # noqa: E402
from compressor.sweep import expand, parse_axis  # noqa: E402
from tests.reliability_fixtures import write_tiny_recipe  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sweep.md"
GRID = ["steps[0].quantize.calibration=minmax,percentile"]


def _cli(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "compressor", *args], env=env, capture_output=True, text=True)
    if out.returncode not in (0, 1):  # 1: a gate failed; the run itself finished
        raise SystemExit(f"compressor {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - t0


def _absolute(recipe_dict: dict, base: Path) -> dict:
    """The model paths of a recipe made absolute (as the run resolves them: the working folder
    first, then the recipe's), so its YAML can live in another folder."""
    from compressor.utils.paths import resolve_path

    model = recipe_dict["model"]
    if "factory" in model and ".py:" in model["factory"]:
        file, fn = model["factory"].rsplit(":", 1)
        model["factory"] = f"{resolve_path(file, base).resolve()}:{fn}"
    for key in ("weights", "onnx"):
        if model.get(key):
            model[key] = str(resolve_path(model[key], base).resolve())
    return recipe_dict


def _machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.*)", cpu)
    fam, mod = re.search(r"CPU family:\s*(\d+)", cpu), re.search(r"Model:\s*(\d+)", cpu)
    isa = sorted(set(re.findall(r"avx512_vnni|avx2|amx_int8", cpu)))
    return (f"{model.group(1) if model else '?'} (family {fam.group(1) if fam else '?'} model "
            f"{mod.group(1) if mod else '?'}, {'+'.join(isa)}), {os.cpu_count()} cores")


def _trial_files(recipe_path: Path, out: Path, into: Path) -> list[str]:
    """The recipes of the trials a search ran (not the pruned duplicates), as YAML files."""
    from benchmarks._search_recipe import SPACE
    from compressor.sweep import parse_dimension
    from compressor.sweep.space import space_variant

    report = json.loads((out / "report.json").read_text())
    ran = [t for t in report["sweep"]["search"]["trials"] if "variant" in t and "duplicate_of" not in t]
    recipe, dims = load_recipe(recipe_path), [parse_dimension(d) for d in SPACE]
    into.mkdir(parents=True, exist_ok=True)
    files = []
    for t in ran:
        v = space_variant(recipe, dims, t["params"], t["variant"])
        f = into / f"{v.name}.yaml"
        f.write_text(yaml.safe_dump(_absolute(v.recipe.model_dump(mode="json", exclude_unset=True),
                                              recipe_path.parent), sort_keys=False))
        files.append(str(f))
    return files


def _sequential(files: list[str], shared: Path | None = None) -> float:
    """The recipes run one after another in one fresh process, wall-clock seconds; with
    ``shared``, through a shared step cache as the sweep's variants are (the baseline export once)."""
    if shared is None:
        loop = ("import sys; from compressor import api\n"
                "for f in sys.argv[1:]: api.run(f, out=f[:-5] + '-run')\n")
    else:
        loop = ("import sys; from pathlib import Path\n"
                "from compressor.pipeline import run_recipe\nfrom compressor.recipe import load_recipe\n"
                f"for f in sys.argv[1:]: run_recipe(load_recipe(Path(f)), recipe_path=Path(f), "
                f"run_dir=Path(f[:-5] + '-shared'), shared_cache=Path({str(shared)!r}))\n")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", loop, *files], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main_search(trials: int, repeats: int) -> None:
    """The search against the same trials run one after another in one process. Repeat 0 runs
    the search first (its trials are what the sequential side runs); later repeats alternate
    the order, the sequential side running the previous search's trials first."""
    from benchmarks._search_recipe import SPACE, space_args, write_search_recipe

    work = Path(tempfile.mkdtemp(prefix="search-overhead-"))
    recipe_path = write_search_recipe(work / "model")
    loads, rows = [os.getloadavg()[0]], []
    for i in range(repeats):
        out = work / f"search{i}"
        order = ["search", "serial", "shared"] if i % 2 == 0 else ["shared", "serial", "search"]
        source = out if order[0] == "search" else work / f"search{i - 1}"  # whose trials the sequential side runs
        t: dict[str, float] = {}
        for which in order:
            if which == "search":
                t["search"] = _cli("sweep", str(recipe_path), "--search", "optuna", "--trials", str(trials),
                                   *space_args(), "--out", str(out))
            elif which == "serial":  # one trial in flight: no step of one trial overlaps another's benchmark
                t["serial"] = _cli("sweep", str(recipe_path), "--search", "optuna", "--trials", str(trials),
                                   *space_args(), "--parallel", "1", "--out", str(work / f"serial{i}"))
            else:
                files = _trial_files(recipe_path, source, work / f"{which}{i}")
                t[which] = _sequential(files, work / f"cache{i}" if which == "shared" else None)
            print(f"repeat {i} {which}: {t[which]:.1f} s", flush=True)
        report = json.loads((out / "report.json").read_text())
        states = [x["state"] for x in report["sweep"]["search"]["trials"]]
        rows.append((i, ", ".join(order), t["search"], t["serial"], t["shared"], len(files),
                     ", ".join(f"{states.count(x)} {x}" for x in sorted(set(states))),
                     report["sweep"]["shared_steps_reused"]))
        loads.append(os.getloadavg()[0])
    table = "\n".join(f"| {i} | {o} | {a:.1f} | {b:.1f} | {c:.1f} | {(a / c - 1) * 100:+.1f}% | {(b / c - 1) * 100:+.1f}% "
                      f"| {n} ran ({st}) | {sh} |" for i, o, a, b, c, n, st, sh in rows)
    worst = max((b / c - 1) * 100 for _, _, _, b, c, *_ in rows)
    body = f"""`nice python benchmarks/sweep_overhead.py --search {trials} --repeats {repeats}` on
{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {_machine()}, load average {min(loads):.1f}-{max(loads):.1f}
(a shared machine), Python {platform.python_version()}.

Search space {', '.join(f'`{x}`' for x in SPACE)}; objectives accuracy, latency, size (TPE, {trials} trials).
Wall-clock seconds, each side a fresh process (imports and, for the search, Ray start-up included). The
sequential side runs the trial recipes of the search before it (repeat 0: the search of the same repeat).

| repeat | order | search (local Ray, default: 2 trials in flight) | serial: the same search with `--parallel 1` | shared: the search's trials one after another, one step cache | search vs shared | serial vs shared | trials | steps reused (search) |
|---|---|---|---|---|---|---|---|---|
{table}

"shared" runs the trial recipes of the search (repeat 0: of the same repeat; repeat 1: of repeat 0's) one after
another in one process through one shared step cache, as the search's trials share it (the baseline export runs
once). "serial" is the search with one trial in flight, so no trial's steps overlap another's benchmark: "serial vs
shared" is what Ray, Optuna and the task hand-off cost. The default search also overlaps one trial's steps with
another's benchmark (one CPU slot beside one bench slot): faster, and on a loaded machine two processes also get a
larger share of the CPU. Largest "serial vs shared" overhead {worst:+.1f}% (goal <= 10%: **{'met' if worst <= 10
else 'missed'}**).
"""
    print(body)
    update_section("search-overhead", "Search overhead vs the same trials run sequentially", body, RESULTS)
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", type=Path, default=None, help="default: the tiny digits recipe of the tests")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--search", type=int, default=None, metavar="TRIALS",
                    help="measure an Optuna search of TRIALS trials instead of the grid")
    args = ap.parse_args()
    if args.search:
        main_search(args.search, args.repeats)
        return
    work = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    recipe_path = args.recipe.resolve() if args.recipe else write_tiny_recipe(work / "model")
    recipe = load_recipe(recipe_path)
    variants = expand(recipe, [parse_axis(g) for g in GRID])
    files = []
    for v in variants:
        f = work / f"{v.name}.yaml"
        f.write_text(yaml.safe_dump(_absolute(v.recipe.model_dump(mode="json", exclude_unset=True),
                                              recipe_path.parent), sort_keys=False))
        files.append(f)
    seq, swp = [], []
    for i in range(args.repeats):
        order = ["seq", "sweep"] if i % 2 == 0 else ["sweep", "seq"]
        for which in order:
            if which == "seq":
                seq.append(sum(_cli("run", str(f), "--out", str(work / f"run{i}-{f.stem}"), "-q") for f in files))
            else:
                grid = [a for g in GRID for a in ("--grid", g)]
                swp.append(_cli("sweep", str(recipe_path), *grid, "--out", str(work / f"sweep{i}")))
            print(f"repeat {i} {which}: {(seq if which == 'seq' else swp)[-1]:.1f} s", flush=True)
    report = json.loads((work / "sweep0" / "report.json").read_text())
    reused = report["sweep"]["shared_steps_reused"]
    overhead = [(s / q - 1.0) * 100 for s, q in zip(swp, seq)]
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    isa = sorted(set(re.findall(r"avx512_vnni|avx2|amx_int8", cpu)))
    load = os.getloadavg()[0]
    name = args.recipe.name if args.recipe else "tiny (tests/reliability_fixtures.py)"
    body = f"""`nice python benchmarks/sweep_overhead.py{' --recipe ' + str(args.recipe) if args.recipe else ''} --repeats {args.repeats}`
on {_dt.date.today()}, {os.cpu_count()} cores ({', '.join(isa)}), load average {load:.1f}, Python {platform.python_version()}.

Recipe {name}, grid `{' '.join(GRID)}` ({len(variants)} variants, 1 target each).
Wall-clock seconds, each side a fresh process (imports and Ray start-up included):

| repeat | {len(variants)} x `compressor run` | `compressor sweep` (local Ray) | sweep overhead |
|---|---|---|---|
""" + "\n".join(f"| {i} | {q:.1f} | {s:.1f} | {o:+.1f}% |" for i, (q, s, o) in enumerate(zip(seq, swp, overhead))) + f"""

Median overhead {sorted(overhead)[len(overhead) // 2]:+.1f}% (goal <= 10%). Steps the sweep's variants
shared through the step cache instead of re-running: {reused}.
"""
    print(body)
    update_section("sweep-overhead", f"Sweep overhead vs sequential runs: {name}", body, RESULTS)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
