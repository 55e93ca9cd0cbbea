"""The run's INT8 verdict comes from its own latencies: where no INT8 result beats FP32 the
report says so in one line naming the fastest option, the lever that paid, and min_speedup
fails (from the measurement, not from a table's promise)."""

from __future__ import annotations

from compressor.report.gates import GateLimits, evaluate_gates
from compressor.report.model import Report
from compressor.report.verdict import int8_verdict


def _result(variant: str, target: str, precision: str, p50: float, paired: float | None = None) -> dict:
    r = {"variant": variant, "target": target, "precision": precision,
         "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50, "std": 0.01}}
    if paired is not None:
        r["paired"] = {"against": "baseline", "speedup": paired, "p10": paired * 0.95, "p90": paired * 1.05,
                       "rounds": 30, "per_round": 10, "p50_ms": p50, "against_p50_ms": p50 * paired}
    return r


def _report(results: list[dict]) -> Report:
    return Report.model_validate({"recipe": "quickstart", "results": results})


def test_zen1_quickstart_on_two_runtimes_says_int8_does_not_pay():
    # the Zen 1 run: ORT INT8 1.02x ORT FP32, OpenVINO INT8 0.94x, OpenVINO FP32 1.6x slower than ORT FP32
    report = _report([_result("baseline", "onnxruntime-cpu", "fp32", 1.00),
                      _result("compressed", "onnxruntime-cpu", "int8", 0.98, paired=1.02),
                      _result("baseline", "openvino-cpu", "fp32", 1.60),
                      _result("compressed", "openvino-cpu", "int8", 1.064, paired=1.50)])
    v = int8_verdict(report)
    assert v is not None and v["pays"] is False
    assert v["best_int8"] == {"variant": "compressed", "target": "onnxruntime-cpu", "speedup": 1.02}
    assert v["line"].startswith("INT8 does not pay here: the fastest INT8 result, compressed@onnxruntime-cpu, ran "
                                "1.02x FP32 on onnxruntime-cpu; fastest measured: compressed (int8) on onnxruntime-cpu")
    assert v["levers"] == [] and "structured pruning" in v["line"]
    gates = evaluate_gates(report, GateLimits(min_speedup=1.3))
    assert [g.passed for g in gates if g.name == "min_speedup"] == [False, True]  # OpenVINO's 1.5x is over a slow FP32


def test_a_faster_runtime_and_a_pruned_model_are_named_as_the_levers():
    report = _report([_result("baseline", "onnxruntime-cpu", "fp32", 1.00),
                      _result("compressed-fp32", "onnxruntime-cpu", "fp32", 0.50),
                      _result("compressed", "onnxruntime-cpu", "int8", 1.10, paired=0.91),
                      _result("baseline", "openvino-cpu", "fp32", 0.80)])
    v = int8_verdict(report)
    assert v["pays"] is False and v["against"] == "FP32 on openvino-cpu"
    assert v["levers"] == ["the runtime: FP32 on openvino-cpu ran 1.25x FP32 on onnxruntime-cpu",
                           "fewer MACs: the recipe's compressed-fp32 model (FP32) on onnxruntime-cpu ran 1.60x FP32 "
                           "on openvino-cpu"]
    assert "What pays here: the runtime" in v["line"] and "fastest measured: compressed-fp32 (fp32)" in v["line"]


def test_int8_that_pays_says_so_and_no_int8_means_no_verdict():
    v = int8_verdict(_report([_result("baseline", "onnxruntime-cpu", "fp32", 1.0),
                              _result("compressed", "onnxruntime-cpu", "int8", 0.45, paired=2.2)]))
    assert v["pays"] and v["line"] == ("INT8 pays here: compressed@onnxruntime-cpu ran 2.20x FP32 on onnxruntime-cpu "
                                       "(the fastest FP32 run)")
    assert int8_verdict(_report([_result("baseline", "onnxruntime-cpu", "fp32", 1.0)])) is None
