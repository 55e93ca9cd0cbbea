"""`compressor bench` on one artifact, latency statistics and metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.bench.latency import LatencyStats, measure_latency
from compressor.metrics import compute_metric, metric_drop, scoring_labels
from compressor.errors import DataError


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model_dir, tmp_path_factory):
    from compressor.export.onnx_export import export_onnx
    from compressor.models.factory import import_callable
    from compressor.models.weights import apply_state_dict, load_state_dict

    model = import_callable(f"{tiny_model_dir}/tiny.py:build")()
    apply_state_dict(model, load_state_dict(tiny_model_dir / "tiny.safetensors"), "tiny")
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(model.eval(), path, [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}])


def test_bench_with_data_writes_report(cli, tiny_onnx, tmp_path):
    out = tmp_path / "bench.json"
    res = cli("bench", tiny_onnx, "--target", "onnxruntime-cpu", "--data", "digits", "--samples", "200",
              "--warmup", "2", "--iterations", "10", "--min-duration", "0", "--out", out)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    row = report["results"][0]
    assert row["precision"] == "fp32" and row["accuracy"]["samples"] == 200
    assert row["accuracy"]["value"] > 0.8
    assert row["latency_ms"]["n"] >= 10
    assert report["environment"]["cpu"] and row["device"]["runtime"] == "onnxruntime"


def test_bench_latency_only_without_data(cli, tiny_onnx):
    res = cli("bench", tiny_onnx, "--warmup", "1", "--iterations", "5", "--min-duration", "0")
    assert res.exit_code == 0, res.output
    assert "onnxruntime-cpu" in res.output


def test_bench_missing_file(cli, tmp_path):
    res = cli("bench", tmp_path / "nope.onnx")
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_latency_stats_are_ordered_and_respect_minimums():
    calls = []
    stats, samples = measure_latency(lambda: calls.append(1), warmup=3, iterations=25, min_duration_s=0.0)
    assert len(calls) == 28 and stats.n == 25 == len(samples)
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p99 <= stats.max


def test_latency_min_duration_extends_the_run():
    import time

    stats, _ = measure_latency(lambda: time.sleep(0.001), warmup=0, iterations=1, min_duration_s=0.05)
    assert stats.n > 5


def test_latency_stats_from_known_samples():
    s = LatencyStats.from_samples_ms(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s.p50 == 2.5 and s.mean == 2.5 and s.n == 4
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4]) / 2.5)


def test_metrics():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    assert compute_metric("top1", logits, labels) == 0.75
    # class 0: tp 1, fp 1, fn 0 -> f1 2/3; class 1: tp 2, fp 0, fn 1 -> 0.8
    assert compute_metric("macro_f1", logits, labels) == pytest.approx((2 / 3 + 0.8) / 2)
    assert compute_metric("mse", np.ones((2, 3)), np.zeros((2, 3))) == 1.0
    assert compute_metric("cosine", logits, None, reference=logits * 2) == pytest.approx(1.0)
    ref = np.array([[2.0, 1.0], [0.0, 3.0], [0.0, 5.0], [1.0, 0.0]])  # argmax 0,1,1,0 vs 0,1,0,1
    assert compute_metric("top1_agreement", logits, None, reference=ref) == 0.5
    with pytest.raises(DataError, match="needs labels"):
        compute_metric("top1", logits, None)


def test_metric_drop_direction():
    assert metric_drop("top1", 0.90, 0.89) == pytest.approx(1.0)       # points
    assert metric_drop("mse", 0.010, 0.0105) == pytest.approx(5.0)     # percent worse
    assert metric_drop("mse", 0.010, 0.009) < 0                         # better
    assert metric_drop("top1", 0.50, 0.45, relative=True) == pytest.approx(10.0)  # percent of the baseline
    assert metric_drop("mse", 0.0, 0.5) == 0.0                          # nothing to be worse than


def test_mse_scores_an_autoencoder_against_its_input():
    """The one rule (benchmark and accuracy-aware tuner): mse of a single-input model whose
    labels are missing or not shaped like its outputs is scored against the input."""
    x = {"input": np.ones((4, 1, 2, 2), np.float32)}
    classes, targets = np.arange(4), np.zeros((4, 1, 2, 2))
    assert scoring_labels("mse", classes, x, 16) is x["input"]
    assert scoring_labels("mse", None, x, 16) is x["input"]
    assert scoring_labels("mse", targets, x, 16) is targets             # real regression targets
    assert scoring_labels("top1", classes, x, 16) is classes
    assert scoring_labels("mse", None, {**x, "mask": x["input"]}, 16) is None   # two inputs: no guess


@pytest.mark.parametrize("target", ["onnxruntime-cpu", "openvino-cpu"])
def test_bench_latency_only_with_input_shape_on_any_target(cli, tiny_onnx, tmp_path, target):
    out = tmp_path / "bench.json"
    res = cli("bench", tiny_onnx, "--target", target, "--input-shape", "1,1,8,8", "--warmup", "1",
              "--iterations", "5", "--min-duration", "0", "--out", out)
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["results"][0]
    assert row["target"] == target and row["latency_ms"]["n"] >= 5 and "accuracy" not in row


def test_interleaved_timing_alternates_and_pairs_rounds():
    from compressor.bench.latency import measure_interleaved

    order: list[str] = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    timing = measure_interleaved(calls, rounds=4, per_round=2, warmup=1)
    # warm-up once each, then rounds a a b b | b b a a | a a b b | b b a a, each block after one
    # untimed call that wakes its threads (the pause before it lets the other call's threads settle)
    assert order == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert set(timing.stats) == {"a", "b"} and timing.stats["a"].n == 8
    assert len(timing.speedups["b"]) == 4 and np.allclose(timing.speedups["a"], 1.0)
    assert timing.speedup("a") == 1.0


def test_onnxruntime_sessions_do_not_spin_unless_asked(tmp_path):
    """Spinning worker threads of one session take the cores of the next one timed in the same
    process (compressor/utils/ort_sessions.py): the target's sessions turn spinning off."""
    import onnx
    from onnx import TensorProto, helper

    from compressor.targets.onnxruntime_cpu import OrtSession

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    key = "session.intra_op.allow_spinning"
    quiet = OrtSession(path, 2, {}).session.get_session_options().get_session_config_entry(key)
    assert quiet == "0"
    spinning = OrtSession(path, 2, {"spinning": True}).session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's own default: spin
        spinning.get_session_config_entry(key)
