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
