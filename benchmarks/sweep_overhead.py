"""Sweep overhead: `compressor sweep` (local Ray) against the same variants run one after
another with `compressor run`, wall-clock, alternating which goes first.

    nice python benchmarks/sweep_overhead.py                 # tiny recipe (tests' digits CNN), 2 variants
    nice python benchmarks/sweep_overhead.py --recipe recipes/quickstart.yaml --repeats 1

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", type=Path, default=None, help="default: the tiny digits recipe of the tests")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
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
