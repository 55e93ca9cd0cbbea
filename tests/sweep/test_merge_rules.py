"""The report rules a sweep's merged report relies on (no Ray): per-variant baselines, 3-way Pareto."""

from __future__ import annotations

from compressor.report.gates import GateLimits, baseline_of, evaluate_gates, is_baseline
from compressor.report.model import Report, Result
from compressor.report.plots import pareto_front


def _row(variant: str, p50: float, acc: float, size: int, host: str = "a") -> Result:
    return Result.model_validate({"variant": variant, "target": "t", "precision": "int8", "host": host,
                                  "accuracy": {"metric": "top1", "value": acc}, "size_bytes": size,
                                  "latency_ms": {"p50": p50, "p90": p50, "p99": p50, "mean": p50, "std": 0.0}})


def test_baseline_of_a_sweep_row_is_its_own_variants():
    assert baseline_of("compressed") == "baseline" and baseline_of("r0.3/compressed") == "r0.3/baseline"
    assert is_baseline("baseline") and is_baseline("r0.3/baseline") and not is_baseline("r0.3/compressed")


def test_gates_compare_each_variant_with_the_baseline_beside_it():
    rows = [_row("v1/baseline", 2.0, 0.90, 100), _row("v1/compressed", 1.0, 0.89, 50),
            _row("v2/baseline", 4.0, 0.90, 100), _row("v2/compressed", 1.0, 0.80, 50)]
    gates = evaluate_gates(Report(recipe="r", results=rows), GateLimits(max_accuracy_drop=5.0, min_speedup=3.0))
    verdict = {(g.name, g.detail.split("@")[0]): (g.value, g.passed) for g in gates}
    assert verdict[("min_speedup", "v1/compressed")] == (2.0, False)
    assert verdict[("min_speedup", "v2/compressed")] == (4.0, True)
    assert verdict[("max_accuracy_drop", "v2/compressed")][1] is False


def test_pareto_with_size_keeps_the_smaller_model():
    fast = _row("a", 1.0, 0.9, 100)
    small = _row("b", 1.0, 0.9, 50)  # same speed and accuracy, smaller
    slow_small = _row("c", 2.0, 0.9, 10)
    assert pareto_front([fast, small, slow_small], size=True) == [small, slow_small]
    assert pareto_front([fast, small, slow_small]) == [fast, small]  # latency and accuracy only: a tie


def test_best_variant_slower_than_fp32_is_not_called_best():
    """A sweep whose fastest passing variant is slower than its FP32 baseline says the baseline
    is the fastest option (the issue's 0.82x "best"), and names a real winner plainly."""
    from compressor.report.model import PairedSpeedup
    from compressor.sweep.merge import _best, best_line

    rows = [_row("v1/baseline", 1.0, 0.90, 100), _row("v1/compressed", 1.22, 0.90, 50),
            _row("v2/baseline", 1.0, 0.90, 100), _row("v2/compressed", 1.5, 0.90, 50)]
    summary = [{"name": "v1", "gates_passed": True}, {"name": "v2", "gates_passed": True}]
    best = _best(Report(recipe="r", results=rows), summary)["t"]
    assert best["variant"] == "v1/compressed" and best["speedup"] == round(1 / 1.22, 3) and best["pays"] is False
    assert best_line(best).startswith("no variant is faster than its FP32 baseline") and "v1/compressed" in best_line(best)
    # the paired (interleaved) ratio wins over the p50 ratio where the run measured it
    rows[1] = rows[1].model_copy(update={"paired": PairedSpeedup.model_validate(
        {"against": "v1/baseline", "speedup": 1.4, "p10": 1.3, "p90": 1.5, "rounds": 30, "per_round": 10, "p50_ms": 0.9, "against_p50_ms": 1.26})})
    best = _best(Report(recipe="r", results=rows), summary)["t"]
    assert best["speedup"] == 1.4 and best["pays"] is True and best_line(best).startswith("v1/compressed (1.4x")
    assert best_line(None) == "no variant passed the recipe's gates"
