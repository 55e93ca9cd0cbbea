"""Fuzz the recipe loader with many generated documents and count tracebacks (goal: 0).

    nice python benchmarks/fuzz_recipes.py --cases 1000

Three generators (tests/recipe/fuzzing.py): random YAML-ish text, random YAML
documents, and mutations of the real recipes (dropped/renamed keys, wrong types,
deep nesting, huge numbers, unicode). Each case must end as a valid Recipe or one
RecipeError line naming a location. Results: benchmarks/out/fuzz_recipes.json and the
"fuzzing" section of benchmarks/results/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from hypothesis import HealthCheck, given, settings  # noqa: E402

from benchmarks.results_md import update_section  # noqa: E402
from tests.recipe.fuzzing import check_one, data, mutated_recipes, to_yaml, yaml_text  # noqa: E402


def run(cases: int) -> dict:
    counts: Counter[str] = Counter()
    failures: list[str] = []
    generators = {"random-text": (yaml_text, lambda x: x), "random-document": (data, to_yaml),
                  "mutated-recipe": (mutated_recipes(), to_yaml)}
    for name, (strategy, render) in generators.items():
        @settings(max_examples=cases, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(strategy)
        def one(x):
            text = render(x)
            try:
                counts[f"{name}:{check_one(text)}"] += 1
            except BaseException as e:  # noqa: BLE001 - counting, not hiding: every one is reported
                counts[f"{name}:traceback"] += 1
                failures.append(f"{name}: {type(e).__name__}: {e} <- {text[:200]!r}\n{traceback.format_exc(limit=3)}")

        one()
    return {"counts": dict(counts), "failures": failures[:20]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000, help="examples per generator")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args.cases)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    counts = res["counts"]
    total = sum(counts.values())
    tracebacks = sum(v for k, v in counts.items() if k.endswith(":traceback"))
    res.update(total=total, tracebacks=tracebacks)
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / "fuzz_recipes.json").write_text(json.dumps(res, indent=2))
    rows = ["| generator | valid | clear error | traceback or unclear error |", "|---|---:|---:|---:|"]
    for g in ("random-text", "random-document", "mutated-recipe"):
        rows.append(f"| {g} | {counts.get(g + ':valid', 0)} | {counts.get(g + ':error', 0)} "
                    f"| {counts.get(g + ':traceback', 0)} |")
    body = "\n".join([
        f"Command: `nice python benchmarks/fuzz_recipes.py --cases {args.cases}` ({res['seconds']} s).", "",
        f"**{total} generated recipes, {tracebacks} tracebacks.** Every other case ended as a valid Recipe "
        "or a one-line RecipeError naming the file and line.", "", *rows,
    ])
    update_section("fuzzing", "Recipe loader fuzzing", body)
    print(body)
    for f in res["failures"]:
        print(f)
    sys.exit(1 if tracebacks else 0)


if __name__ == "__main__":
    main()
