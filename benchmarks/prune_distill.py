"""Prune + distill (+ INT8) on the quickstart Fashion-MNIST CNN, and the ablation
prune + fine-tune with the same epochs, all on onnxruntime-cpu.

Runs recipes/prune_distill_int8.yaml (baseline FP32, pruned+distilled FP32,
pruned+distilled INT8) and recipes/prune_finetune.yaml through the real pipeline,
with the training budget set from the command line (2 shared CPU cores are slow):

    nice python benchmarks/prune_distill.py --epochs 2 --train-samples 10000

Writes benchmarks/out/prune_distill/<run>/report.json and a table to
benchmarks/out/prune_distill.md (copy it to benchmarks/results/ to commit).
Speedups are ratios against the unpruned FP32 baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

import compressor  # noqa: E402
from compressor.recipe import load_recipe  # noqa: E402


def configure(path: Path, args: argparse.Namespace):
    recipe = load_recipe(path)
    data = recipe.data.model_copy(update={
        "train": recipe.data.train.model_copy(update={"samples": args.train_samples}),
        "evaluation": recipe.data.evaluation.model_copy(update={"samples": args.eval_samples}),
    })
    steps = []
    for kind, spec in zip(recipe.step_kinds(), recipe.steps):
        cfg = getattr(spec, kind)
        if kind in ("distill", "finetune"):
            cfg = cfg.model_copy(update={"epochs": args.epochs, "eval_samples": args.epoch_eval_samples,
                                         "early_stopping": None, "threads": args.train_threads,
                                         "bf16": args.bf16, "lr": args.lr,
                                         # no model selection on the test split the report measures
                                         "restore_best": False})
        steps.append(type(spec)(**{kind: cfg}))
    bench = recipe.benchmark.model_copy(update={"iterations": args.iterations})
    return recipe.model_copy(update={"data": data, "steps": steps, "benchmark": bench})


def rows(report, label: str) -> list[str]:
    base = next(r for r in report.results if r.variant == "baseline")
    out = []
    for r in report.results:
        if r.status != "ok":
            out.append(f"| {label} | {r.variant} | {r.precision} | failed: {r.error} | | | |")
            continue
        speed = base.latency_ms.p50 / r.latency_ms.p50
        drop = 100 * (base.accuracy.value - r.accuracy.value)
        out.append(f"| {label} | {r.variant} | {r.precision} | {100 * r.accuracy.value:.2f}% | {drop:+.2f} pp | "
                   f"{r.latency_ms.p50:.3f} | {speed:.2f}x | {r.size_bytes / 1024:.0f} KiB |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-samples", type=int, default=10000, help="training subset (60000 = all)")
    ap.add_argument("--eval-samples", type=int, default=10000, help="test images for the final accuracy")
    ap.add_argument("--epoch-eval-samples", type=int, default=1000,
                    help="training images held out for per-epoch validation (never test images)")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads for training (1 beats 2 on busy cores)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast while training")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--iterations", type=int, default=300, help="timed batch-1 runs per variant")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "prune_distill")
    args = ap.parse_args()

    lines = [f"Command: `nice python benchmarks/prune_distill.py --epochs {args.epochs} --train-samples "
             f"{args.train_samples} --eval-samples {args.eval_samples} --epoch-eval-samples {args.epoch_eval_samples} "
             f"--iterations {args.iterations} --train-threads {args.train_threads} --lr {args.lr}"
             + (" --bf16" if args.bf16 else "") + "`", "",
             "| run | variant | precision | top-1 | vs baseline | p50 ms (batch 1) | speedup | size |",
             "|---|---|---|---|---|---|---|---|"]
    timing = []
    for name in ("prune_distill_int8", "prune_finetune"):
        recipe = configure(ROOT / "recipes" / f"{name}.yaml", args)
        t0 = time.perf_counter()
        report = compressor.run(recipe, out=args.out / name, progress=True, base_dir=ROOT / "recipes")
        total = time.perf_counter() - t0
        lines += rows(report, name)
        steps = ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in report.steps)
        timing.append(f"- {name}: {total:.0f} s in all ({steps})")
        for s in report.steps:
            for row in (s.get("details") or {}).get("history", []):
                timing.append(f"  - {s['name']} epoch {row['epoch']}: loss {row['loss']:.4f}, "
                              f"val acc ({args.epoch_eval_samples} held-out train images) {row['val_accuracy']:.4f}, {row['seconds']:.0f} s")
        env = report.environment
    lines += ["", "Wall time on this machine (2 shared cores):", *timing, "",
              f"Environment: {env.get('cpu', '?')}, threads {env.get('threads', '?')}"]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out.parent / "prune_distill.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
