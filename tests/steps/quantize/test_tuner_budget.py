"""The tuner's time budget (the FP32 fallback always gets its share), its progress lines on a
non-terminal output, FP32's own noise floor beside agreement figures, the judging metric, and
latency among passing trials."""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.data import load_split
from compressor.data.dataset import Dataset
from compressor.recipe.schema import AccuracyCriterion
from compressor.steps.quantize import tuning
from compressor.steps.quantize.noise import NoiseFloor, input_quantum, mean_floor, noise_floor, perturb
from compressor.steps.quantize.tuning import Evaluator, Tuner, ort_outputs
from tests.accuracy_fixtures import write_recipe
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net

_register()


def _run(recipe, out):
    return CliRunner().invoke(cli, ["run", str(recipe), "--out", str(out)])


def _tuning(out):
    report = json.loads((out / "report.json").read_text())
    return next(s for s in report["steps"] if s["kind"] == "quantize")["details"]["tuning"], report


def _agreement(recipe):
    """The recipe scored by top-1 agreement with FP32 (no labels needed)."""
    recipe.write_text(recipe.read_text().replace("  evaluation:", "  metric: top1_agreement\n  evaluation:", 1))
    return recipe


def test_the_time_budget_reaches_the_fallback(hostile_dir, tmp_path):
    # a variants' share of the time budget (0.3 us) that the first trial always spends (a 0.03 s
    # share flaked on CI: the tiny model's first trial can finish in 0.03 s): every other
    # whole-model variant is skipped and the sensitivity-ordered fallback runs, and passes.
    # (The trial count would have let all nine variants run first, as in the 10 trials.)
    q = "{accuracy_criterion: {max_drop: 1.0, time_budget_s: 300, global_share: 1.0e-9}}"
    res = _run(write_recipe(hostile_dir, q, name="budget"), tmp_path / "b")
    assert res.exit_code == 0, res.output
    tuning_, _ = _tuning(tmp_path / "b")
    trials = tuning_["trials"]
    assert trials[0]["label"] == "default" and trials[0]["phase"] == "global" and trials[0]["drop"] > 20
    assert all(t["phase"] == "per-layer" for t in trials[1:]), [t["label"] for t in trials]
    assert tuning_["passed"] and len(tuning_["fallback_nodes"]) == 2 and tuning_["time_budget_s"] == 300
    assert any("whole-model variant(s) skipped" in n for n in tuning_["notes"])
    q_details = next(s for s in _tuning(tmp_path / "b")[1]["steps"] if s["kind"] == "quantize")["details"]
    assert q_details["macs"]["int8_mac_share"] > 0.5 and "mostly_fp32" not in q_details


def test_a_model_met_mostly_in_fp32_is_called_so(hostile_dir, tmp_path, monkeypatch):
    # the same fallback (2 of 3 layers FP32, 74% of MACs INT8) under a 0.8 threshold: the run passes,
    # and says, in the terminal, the details and report.md, how little of the model is INT8
    from compressor.steps.quantize import step

    monkeypatch.setattr(step, "MOSTLY_FP32", 0.8)
    q = "{accuracy_criterion: {max_drop: 1.0, time_budget_s: 300, global_share: 1.0e-9}}"
    res = _run(write_recipe(hostile_dir, q, name="mostly"), tmp_path / "m")
    assert res.exit_code == 0, res.output
    _, report = _tuning(tmp_path / "m")
    line = next(s for s in report["steps"] if s["kind"] == "quantize")["details"]["mostly_fp32"]
    assert line.startswith("the accuracy criterion was met with only 74% of MACs in INT8 (2 compute node(s)")
    assert "min_int8_mac_share" in " ".join(res.output.split())
    assert "only 74% of MACs in INT8" in (tmp_path / "m" / "report.md").read_text()


def test_timeout_s_is_the_older_name_of_the_budget():
    assert AccuracyCriterion(timeout_s=120).time_budget_s == 120
    assert AccuracyCriterion().time_budget_s == 600 and AccuracyCriterion().max_trials is None
    with pytest.raises(ValueError, match="not both"):
        AccuracyCriterion(timeout_s=120, time_budget_s=60)


def test_progress_lines_and_heartbeats_without_a_terminal(hostile_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "HEARTBEAT_S", 0.001)  # every trial is "long" here
    q = "{accuracy_criterion: {max_drop: 1.0, max_trials: 2, tune_calibration: false}}"
    res = _run(_agreement(write_recipe(hostile_dir, q, name="lines")), tmp_path / "p")
    text = " ".join(res.output.split())  # CliRunner's output is not a terminal: plain, wrapped lines
    assert "tuning trial 1 [default]: top1_agreement" in text and "tuning trial 2 [" in text
    assert "FP32 noise floor" in text and "x FP32 latency" in text and "of 600 s" in text
    assert "tuning: trial 1 [default] still running" in text  # the heartbeat
    assert "per-layer sensitivity" in text


def _agreement_run(hostile_dir, out, q: str, name: str):
    """A successful run of the recipe scored by agreement: (its output, tuning details, report)."""
    res = _run(_agreement(write_recipe(hostile_dir, q, name=name)), out)
    assert res.exit_code == 0, res.output
    return (res.output, *_tuning(out))


def test_agreement_is_judged_on_stable_samples_beside_the_noise_floor(hostile_dir, tmp_path):
    _, t, report = _agreement_run(hostile_dir, tmp_path / "s", "{accuracy_criterion: {max_drop: 1.0}}", "stable")
    nf = t["noise_floor"]
    assert nf["metric"] == "top1_agreement" and 0.0 < nf["value"] <= 1.0 and nf["samples"] == 300
    assert "uniform +-1 LSB" in nf["perturbation"] and "data's own quantum" in nf["perturbation"]
    # one draw of noise: the stable samples are exactly the ones that agree
    assert nf["stable_samples"] == round(nf["value"] * nf["samples"])
    assert t["judge"] == {"metric": "top1_agreement", "samples": "stable", "count": nf["stable_samples"]}
    assert t["judged_by"].startswith(f"top1_agreement on the {nf['stable_samples']} of 300 samples")
    assert all("metric_all" in x and "kl" in x for x in t["trials"])
    assert t["sensitivity_ranked_by"] == "kl" and t["passed"]
    # the run's own agreement figures have the evaluation data's floor beside them
    assert report["noise_floor"]["metric"] == "top1_agreement" and report["noise_floor"]["samples"] == 300
    page = (tmp_path / "s" / "report.md").read_text()
    assert "FP32 noise floor" in page and "trials judged by" in page


def test_agreement_on_all_samples_is_recorded(hostile_dir, tmp_path):
    q = "{accuracy_criterion: {max_drop: 1.0, max_trials: 1, agreement_on: all, on_failure: keep_best}}"
    _run(_agreement(write_recipe(hostile_dir, q, name="all")), tmp_path / "a")
    t, _ = _tuning(tmp_path / "a")
    assert t["judge"] == {"metric": "top1_agreement", "samples": "all", "count": 300}
    assert "metric_all" not in t["trials"][0] and "noise_floor" in t


def test_agreement_from_the_noise_floor_counts_drops_below_the_input_noise():
    # 100 samples, FP32 answers class k % 4; FP32 under +-1 LSB keeps 90 of them (floor 0.90)
    k = np.arange(100) % 4
    reference = [np.eye(4, dtype=np.float32)[k]]
    nf = NoiseFloor("top1_agreement", 0.90, "uniform +-1 LSB", 100, np.arange(100) < 90)
    data = Dataset({"x": np.zeros((100, 1), np.float32)})
    crit = AccuracyCriterion(max_drop=1.0, agreement_on="noise_floor")
    ev = Evaluator(data, "top1_agreement", reference, crit, nf)

    def agreeing(n: int) -> list[np.ndarray]:  # a candidate whose top-1 differs on the first 100 - n samples
        out = reference[0].copy()
        out[: 100 - n] = np.roll(out[: 100 - n], 1, axis=1)
        return [out]

    assert ev.stable is None and ev.baseline == 1.0 and ev.drop_base == 0.90
    assert ev.drop(ev.evaluate(agreeing(92))[0]) == pytest.approx(-2.0) and ev.passes(0.92)
    assert ev.passes(0.89) and not ev.passes(0.88)  # 1 point below the floor passes, 2 do not
    assert ev.details()["judge"] == {"metric": "top1_agreement", "samples": "all", "count": 100,
                                     "drop_from": {"noise_floor": 0.9}}
    assert "counted from FP32's own agreement under +-1 LSB input noise (0.9000)" in ev.judged_by
    # the default judge counts the same candidate's drop from 100% on the 90 stable samples
    stable = Evaluator(data, "top1_agreement", reference, AccuracyCriterion(max_drop=1.0), nf)
    assert stable.drop_base == 1.0 and not stable.passes(stable.score(agreeing(92)))


def test_mean_floor_of_three_seeds_keeps_the_first_seeds_stable_samples():
    first = NoiseFloor("top1_agreement", 0.90, "uniform +-1 LSB", 10, np.arange(10) > 0)
    floors = [first, NoiseFloor("top1_agreement", 0.80, "x", 10, None), NoiseFloor("top1_agreement", 0.85, "x", 10,
                                                                                    None)]
    m = mean_floor(floors)
    assert m.value == pytest.approx(0.85) and m.stable is first.stable and m.perturbation.endswith("mean of 3 seeds")
    assert mean_floor([first]) is first


def test_noise_floor_judge_in_a_run(hostile_dir, tmp_path):
    q = "{accuracy_criterion: {max_drop: 1.0, agreement_on: noise_floor}}"
    output, t, _ = _agreement_run(hostile_dir, tmp_path / "f", q, "floor")
    nf = t["noise_floor"]
    assert nf["perturbation"].endswith("mean of 3 seeds") and t["judge"]["samples"] == "all"
    assert t["judge"]["drop_from"] == {"noise_floor": nf["value"]}
    # every trial's drop is counted from the floor, not from FP32's 100%
    assert all(x["drop"] == pytest.approx((nf["value"] - x["metric"]) * 100, abs=1e-3) for x in t["trials"])
    assert "counted from FP32's own agreement" in " ".join(output.split())


def _digits(n: int = 200) -> Dataset:
    return load_split("digits", "test", n, seed=0)


def test_noise_floor_is_fp32_against_perturbed_fp32(dw_onnx, tmp_path):  # noqa: F811
    data = _digits()
    ref = ort_outputs(dw_onnx, data, 1)[0]
    shaken, how = perturb(data, seed=0)
    x, xs = next(iter(data.inputs.values())), next(iter(shaken.inputs.values()))
    lsb = input_quantum(x)[0][0]
    assert 0 < np.abs(xs - x).max() <= lsb + 1e-6 and np.abs(xs - x).mean() > lsb / 4  # +-1 LSB, uniform
    nf = noise_floor("top1_agreement", ref, ort_outputs(dw_onnx, shaken, 1)[0], how)
    assert 0.0 < nf.value <= 1.0 and nf.stable is not None and nf.stable.mean() == pytest.approx(nf.value)

    # the same network with a classifier bias no input can outvote: FP32 always answers class 3,
    # so FP32 agrees with itself under any noise (floor exactly 1.0, every sample stable)
    m = onnx.load(str(dw_onnx))
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    bias = next(t for t in m.graph.initializer if t.name == gemm.input[2])
    b = onnx.numpy_helper.to_array(bias).copy()
    b[3] += 1e4
    bias.CopyFrom(onnx.numpy_helper.from_array(b, bias.name))
    fixed = tmp_path / "fixed.onnx"
    onnx.save(m, str(fixed))
    nf1 = noise_floor("top1_agreement", ort_outputs(fixed, data, 1)[0], ort_outputs(fixed, shaken, 1)[0], how)
    assert nf1.value == 1.0 and nf1.stable.all()


def test_input_quantum_of_8bit_images_and_of_continuous_data():
    rng = np.random.default_rng(0)
    std = np.array([0.229, 0.224, 0.225])
    pixels = rng.integers(0, 256, (4, 3, 8, 8)) / 255.0  # 8-bit photos, ImageNet-normalised per channel
    q, how = input_quantum(((pixels - 0.45) / std[None, :, None, None]).astype(np.float32))
    assert np.allclose(q, 1 / 255 / std, rtol=1e-3) and how == "the data's own quantum"
    q, how = input_quantum(rng.normal(size=(50, 20)).astype(np.float32))  # continuous: 1/255 of the range
    assert how == "1/255 of the channel's range" and q.shape == (1,)
    ids = Dataset({"ids": np.arange(10).reshape(5, 2)})
    assert perturb(ids)[1] == "no float input to perturb"


def _tuner(fp32_ms: float) -> Tuner:
    labels = np.arange(100) % 4
    reference = [np.eye(4, dtype=np.float32)[labels]]
    crit = AccuracyCriterion(max_drop=1.0)
    t = Tuner(Evaluator(Dataset({"x": np.zeros((100, 1), np.float32)}, labels), "top1", reference, crit), crit)
    t.fp32_latency_ms = fp32_ms
    return t


def test_latency_steers_the_choice_among_passing_trials():
    t = _tuner(fp32_ms=10.0)
    t.record("U8U8, passes, slower than FP32", 1.0, latency_ms=12.0)
    fast = t.record("U8S8 + 3 FP32 nodes, passes", 1.0, latency_ms=6.0, excluded=["a", "b", "c"])
    assert t.best is fast  # a passing trial slower than FP32 never beats a faster passing one
    faster = t.record("U8S8 + 5 FP32 nodes, passes, much faster", 1.0, latency_ms=4.0, excluded=list("abcde"))
    assert t.best is faster  # clearly faster (beyond SPEED_TOL) wins over fewer fallbacks
    t.record("within the timing noise, more fallbacks", 1.0, latency_ms=3.9, excluded=list("abcdefg"))
    assert t.best is faster  # equally fast: the fewest FP32 nodes
    t.record("failing but fast", 0.9, latency_ms=1.0)
    assert t.best is faster and t.slow(t.trials[0]) and not t.slow(faster)


def test_sensitivity_ranks_by_kl_where_it_applies():
    from compressor.steps.quantize.accuracy_aware import _rank

    rows = [{"node": "tie_small_kl", "metric": 0.99, "output_mse": 1.0, "kl": 0.001},
            {"node": "tie_big_kl", "metric": 0.99, "output_mse": 0.1, "kl": 0.5},
            {"node": "noisy_metric", "metric": 0.97, "output_mse": 0.2, "kl": 0.01},
            {"node": "broken", "metric": None, "output_mse": None}]
    assert [r["node"] for r in _rank(rows, True)] == ["broken", "tie_big_kl", "noisy_metric", "tie_small_kl"]
    plain = [{k: v for k, v in r.items() if k != "kl"} for r in rows]
    assert [r["node"] for r in _rank(plain, True)] == ["broken", "noisy_metric", "tie_small_kl", "tie_big_kl"]


def test_on_a_terminal_a_spinner_and_no_heartbeat_lines(monkeypatch):
    import io

    from rich.console import Console

    from compressor.progress import Reporter

    monkeypatch.setattr(tuning, "HEARTBEAT_S", 0.001)
    out = io.StringIO()
    t = _tuner(fp32_ms=1.0)
    t.progress = Reporter(Console(file=out, force_terminal=True, width=120))
    with t.running("trial 1 [default]"):
        time.sleep(0.05)
    # the sensitivity analysis shows its own bar: one live display at a time
    with t.running("per-layer sensitivity", spinner=False), t.progress.task("per-layer sensitivity", total=2) as up:
        up(1, 2)
    t.record("default", 1.0, latency_ms=0.5)
    assert "still running" not in out.getvalue() and "tuning trial 1 [default]" in out.getvalue()
