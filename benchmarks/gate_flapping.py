"""How often does the max_latency_increase gate flap on an unchanged model?

Runs `compressor bench` N times on the same ONNX model (each a fresh process, like
CI runs) and checks every run against the first with `compressor check
--baseline FIRST --max-latency-increase L`. Every failure is a false failure.
Also shows what the previous rule (3 x the i.i.d. standard error of the median,
no floor) would have done with the same numbers.

    nice python benchmarks/gate_flapping.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

from _models import small_cnn  # noqa: E402

from compressor.report.gates import DEFAULT_LATENCY_FLOOR, DEFAULT_LATENCY_TOLERANCE, GateLimits, evaluate_gates  # noqa: E402
from compressor.report.model import load_report  # noqa: E402


def bench(model: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "compressor", "bench", str(model), "--input-shape", "1,3,128,128", "--warmup", "50",
           "--iterations", "200", "--min-duration", "1.0", "--threads", "2", "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "gate_flapping")
    args = ap.parse_args()
    model = small_cnn(args.out / "small_cnn.onnx")
    t0 = time.time()
    paths = [bench(model, args.out / f"run{i:02d}.json") for i in range(args.runs + 1)]
    first = load_report(paths[0])
    rows = []
    for i, p in enumerate(paths[1:], 1):
        rep = load_report(p)
        # bench reports have one result, variant = file stem; gate it like a compressed result
        rep.results[0].variant = first.results[0].variant = "compressed"
        r, o = rep.results[0].latency_ms, first.results[0].latency_ms
        inc = (r.p50 / o.p50 - 1) * 100
        verdicts = {}
        for limit in (0.0, 5.0):
            (g,) = evaluate_gates(rep, GateLimits(max_latency_increase=limit), first)
            verdicts[limit] = g.passed
        old_rule = 3 * 100 * max(1.2533 * x.cv / x.n ** 0.5 for x in (r, o))
        rows.append({"run": i, "p50_ms": r.p50, "increase_pct": inc, "rse_pct": 100 * r.p50_rse,
                     "allowance_pct": float(g.detail.rsplit("allowance ", 1)[1].rstrip("%")),
                     "pass_limit0": verdicts[0.0], "pass_limit5": verdicts[5.0],
                     "old_rule_pass_limit0": inc <= old_rule})
    summary = {
        "runs": args.runs, "first_p50_ms": first.results[0].latency_ms.p50,
        "tolerance": DEFAULT_LATENCY_TOLERANCE, "floor_pct": DEFAULT_LATENCY_FLOOR,
        "false_failures_limit0": sum(not r["pass_limit0"] for r in rows),
        "false_failures_limit5": sum(not r["pass_limit5"] for r in rows),
        "old_rule_false_failures_limit0": sum(not r["old_rule_pass_limit0"] for r in rows),
        "max_increase_pct": max(r["increase_pct"] for r in rows),
        "min_increase_pct": min(r["increase_pct"] for r in rows),
        "seconds": round(time.time() - t0), "rows": rows,
    }
    (args.out / "gate_flapping.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    for r in rows:
        print(f"run {r['run']:2d}: p50 {r['p50_ms']:.4f} ms  {r['increase_pct']:+6.2f}%  allowance "
              f"{r['allowance_pct']:.1f}%  limit0 {'pass' if r['pass_limit0'] else 'FAIL'}  old rule "
              f"{'pass' if r['old_rule_pass_limit0'] else 'FAIL'}")


if __name__ == "__main__":
    main()
