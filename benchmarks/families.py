"""Model families benchmark: every family recipe in recipes/ run end to end, FP32 vs
INT8 (each quantization mode that applies) on every target the recipe names.

    nice python benchmarks/families.py [--only mlp,lstm] [--modes dynamic] [--quick] [--render-only]

Writes the runs to benchmarks/out/families/ and the table to
benchmarks/results/families.md. Speedups are p50 latency ratios measured side by
side in the same run (the machine is shared and noisy: ratios, not absolute times).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from compressor.metrics import metric_drop  # noqa: E402
import compressor  # noqa: E402
from compressor.recipe import load_recipe  # noqa: E402
from compressor.utils.io import atomic_write_text  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "families"
RESULT = ROOT / "benchmarks" / "results" / "families.md"

# family -> (recipe, quantize modes to measure, evaluation samples in --quick mode, example weights to ensure)
FAMILIES: dict[str, tuple[str, list[str], int | None, tuple[str, ...]]] = {
    "mlp": ("mlp.yaml", ["static", "dynamic"], 10000, ("mlp.py", "ensure")),
    "lstm": ("lstm.yaml", ["dynamic", "static"], 2000, ("rnn.py", "ensure", "lstm")),
    "gru": ("gru.yaml", ["dynamic", "static"], 2000, ("rnn.py", "ensure", "gru")),
    "vae": ("vae.yaml", ["static", "dynamic"], 10000, ("vae.py", "ensure")),
    "vae_decoder": ("vae_decoder.yaml", ["static", "dynamic"], 10000, ("vae.py", "ensure")),
    "vae_encoder": ("vae_encoder.yaml", ["static", "dynamic"], 10000, ("vae.py", "ensure")),
    "minilm": ("minilm.yaml", ["dynamic", "static"], 1000, ("minilm.py", "ensure_head")),
    "minilm_embedding": ("minilm_embedding.yaml", ["dynamic", "static"], 300, ()),  # the embedder has no trained part
    "mobilenet_v2": ("mobilenet_v2.yaml", ["static"], 100, ()),
}


def _ensure(spec: tuple[str, ...]) -> None:
    if not spec:
        return
    file, fn, *args = spec
    mod_spec = importlib.util.spec_from_file_location(f"bench_{Path(file).stem}", ROOT / "examples" / file)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    getattr(mod, fn)(*args)


def run_family(name: str, mode: str, quick: bool) -> dict:
    recipe_file, _, quick_samples, ensure = FAMILIES[name]
    _ensure(ensure)
    path = ROOT / "recipes" / recipe_file
    recipe = load_recipe(path)
    q = recipe.steps[0].quantize
    # op_types stay as the recipe has them (MiniLM: MatMul only, in both modes)
    # the recipe's accuracy criterion belongs to its own mode; the other mode is measured plain
    recipe.steps[0].quantize = q.model_copy(update={"mode": mode, **({} if mode == q.mode else {"accuracy_criterion": None})})
    if quick and quick_samples:
        recipe.data.evaluation = recipe.data.evaluation.model_copy(update={"samples": quick_samples})
    t0 = time.perf_counter()
    report = compressor.run(recipe, out=OUT / f"{name}-{mode}", base_dir=path.parent)
    rows = []
    for target in recipe.targets:
        base, comp = report.result("baseline", target), report.result("compressed", target)
        row = {"family": name, "mode": mode, "target": target, "seconds": round(time.perf_counter() - t0, 1),
               "date": dt.date.today().isoformat(), "load1": round(os.getloadavg()[0], 1)}
        if base is None or comp is None or base.status != "ok" or comp.status != "ok":
            row["error"] = (comp.error if comp else None) or (base.error if base else "missing")
            rows.append(row)
            continue
        m = base.accuracy.metric
        row.update(metric=m, fp32=base.accuracy.value, int8=comp.accuracy.value, samples=base.accuracy.samples,
                   drop=metric_drop(m, base.accuracy.value, comp.accuracy.value),
                   drop_unit="pp" if base.accuracy.higher_is_better else "%",
                   fp32_ms=base.latency_ms.p50, int8_ms=comp.latency_ms.p50,
                   speedup=base.latency_ms.p50 / comp.latency_ms.p50,
                   extra={k: (getattr(base, "metrics", None) or {}).get(k) for k in (getattr(comp, "metrics", None) or {})},
                   extra_int8=getattr(comp, "metrics", None) or {}, agreement=comp.parity.top1_agreement if comp.parity else None)
        rows.append(row)
    return {"rows": rows}


def _fmt(v: float) -> str:
    # MSE values are ~0.02: keep 4 significant digits there, 4 decimals for fractions near 1
    return f"{v:.4f}" if abs(v) >= 0.1 else f"{v:.4g}"


def render(rows: list[dict]) -> str:
    dates = sorted({r["date"] for r in rows if "date" in r}) or [dt.date.today().isoformat()]
    loads = [r["load1"] for r in rows if "load1" in r]
    load = f" (1-minute load average {min(loads):.1f}-{max(loads):.1f} when the runs finished" if loads else ""
    if load and any("load1" not in r for r in rows):
        load += "; rows of earlier runs without a recorded load: 2-19"
    load += ")" if load else ""
    lines = ["# Model families: FP32 vs INT8", "",
             f"Measured {', '.join(dates)} on the shared 2-core development machine{load}, other engineers' jobs "
             "running beside it: absolute latencies are noisy, speedups are p50 ratios measured side by side in one run.",
             "", "Reproduce (each family was run with its own command; rows of families not named by --only are kept):",
             "", *[f"    {c}" for c in dict.fromkeys(r.get("command", "?") for r in rows)], "",
             "| family | target | INT8 mode | metric | samples | FP32 | INT8 | drop | FP32 p50 ms | INT8 p50 ms | speedup | extra metrics (FP32 -> INT8) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | {r['target']} | {r['mode']} | FAILED: {r['error']} |||||||||")
            continue
        extra = ", ".join(f"{k} {r['extra'].get(k, float('nan')):.4f} -> {v:.4f}" for k, v in r["extra_int8"].items()
                          if k != r["metric"]) or "-"
        lines.append(f"| {r['family']} | {r['target']} | {r['mode']} | {r['metric']} | {r['samples']} | {_fmt(r['fp32'])} | "
                     f"{_fmt(r['int8'])} | {r['drop']:+.2f} {r['drop_unit']} | {r['fp32_ms']:.3f} | {r['int8_ms']:.3f} | "
                     f"{r['speedup']:.2f}x | {extra} |")
    lines += ["", "drop: percentage points for top1 / macro-F1 / cosine / top-1 agreement; percent increase for MSE "
              "(lower is better). speedup: FP32 p50 / INT8 p50 on the same target.", ""]
    return "\n".join(lines)


def _save_rows(rows: list[dict]) -> list[dict]:
    """Merge this run's rows into benchmarks/results/families.json (committed, so a later run on
    any machine keeps the rows it does not re-measure), keeping the rows of (family, mode) pairs not re-run now (families
    can be measured in separate, even concurrent, runs); re-read at every write so a concurrent run's rows survive."""
    path = RESULT.with_suffix(".json")
    old = json.loads(path.read_text()) if path.exists() else []
    ran = {(r["family"], r["mode"]) for r in rows}
    merged = [r for r in old if (r["family"], r["mode"]) not in ran] + rows
    order = list(FAMILIES)
    merged.sort(key=lambda r: order.index(r["family"]) if r["family"] in order else len(order))  # stable: modes stay
    atomic_write_text(path, json.dumps(merged, indent=1, default=str))
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(FAMILIES), help="comma-separated families")
    ap.add_argument("--modes", default=None, help="restrict INT8 modes, e.g. dynamic")
    ap.add_argument("--quick", action="store_true", help="fewer evaluation samples (see FAMILIES)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the results table from families.json, run nothing")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    only = [] if args.render_only else args.only.split(",")
    rows: list[dict] = []
    merged: list[dict] = _save_rows(rows)
    for name in only:
        for mode in FAMILIES[name][1]:
            if args.modes and mode not in args.modes.split(","):
                continue
            print(f"== {name} ({mode})", flush=True)
            env = f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']} " if "OMP_WAIT_POLICY" in os.environ else ""
            command = f"{env}nice python benchmarks/families.py " + " ".join(sys.argv[1:] if argv is None else argv)
            try:
                rows += [{**r, "command": command} for r in run_family(name, mode, args.quick)["rows"]]
            except Exception as e:  # one family failing must not lose the others' numbers
                rows.append({"family": name, "mode": mode, "target": "-", "error": f"{type(e).__name__}: {e}",
                             "command": command})
            print(json.dumps(rows[-1], default=str), flush=True)
            merged = _save_rows(rows)
    atomic_write_text(RESULT, render(merged))
    print(RESULT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
