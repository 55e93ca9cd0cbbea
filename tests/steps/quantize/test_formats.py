"""The INT8 format decision from measured ratios: pure logic, no timing, so every path (VNNI,
Zen 1 where no INT8 format pays, saturating profiles) is tested on any CPU."""

from __future__ import annotations

from compressor.steps.quantize.formats import Candidate, decide, format_label, from_profile


def _zen1() -> list[Candidate]:
    # benchmarks/device_formats.py on an AMD EPYC Zen 1 (family 23 model 1), quickstart CNN, 2026-12-04
    return [Candidate("U8S8", speedup=0.99, drop=3.0, passed=False), Candidate("U8U8", speedup=0.65, drop=0.0, passed=True),
            Candidate("U8S8 reduce_range", speedup=0.93, drop=0.4, passed=True),
            Candidate("S8S8", speedup=0.83, drop=0.0, passed=True)]


def test_the_fastest_candidate_that_meets_the_limit_wins():
    cands = [Candidate("U8S8", speedup=2.13, drop=0.2, passed=True), Candidate("U8U8", speedup=0.75, drop=0.4, passed=True),
             Candidate("U8S8 reduce_range", speedup=2.3, drop=0.8, passed=False),
             Candidate("S8S8", speedup=0.73, drop=0.2, passed=True)]
    d = decide(cands, where="onnxruntime-cpu", max_drop=0.5)
    assert d.chosen == "U8S8" and d.int8_pays and d.source == "measured"
    assert d.settings == {"activation_type": "uint8", "weight_type": "int8", "reduce_range": False}
    verdicts = {c.label: c.verdict for c in d.candidates}
    assert verdicts["U8S8"].startswith("chosen")
    assert verdicts["U8S8 reduce_range"] == "accuracy drop 0.80 > 0.5"  # faster, but over the limit
    assert verdicts["U8U8"] == "slower than U8S8 (0.75x vs 2.13x)"
    assert "U8S8 chosen, 2.13x FP32" in d.line
    from compressor.steps.quantize.formats import candidate_summary

    assert candidate_summary(d.candidates[1]) == "U8U8 0.75x FP32, drop 0.40: slower than U8S8 (0.75x vs 2.13x)"


def test_no_int8_format_faster_than_fp32_is_said_in_one_line():
    d = decide(_zen1(), where="onnxruntime-cpu (x86-64 AVX2)", max_drop=0.5)
    # the fastest that meets the limit still ships (the recipe asked for INT8), and the run says it does not pay
    assert d.chosen == "U8S8 reduce_range" and d.int8_pays is False
    assert d.fastest == "FP32 on onnxruntime-cpu (x86-64 AVX2)"
    assert d.line == ("INT8 does not pay on onnxruntime-cpu (x86-64 AVX2): the fastest INT8 format, U8S8, ran 0.99x "
                      "FP32; fastest measured: FP32 on onnxruntime-cpu (x86-64 AVX2)")
    assert "\n" not in d.line


def test_a_gain_within_timing_noise_does_not_pay():
    d = decide([Candidate("U8U8", speedup=1.03, drop=0.0, passed=True)], where="t")
    assert d.chosen == "U8U8" and d.int8_pays is False


def test_none_meeting_the_limit_keeps_the_smallest_drop_and_errors_lose():
    cands = [Candidate("U8S8", speedup=2.0, drop=3.0, passed=False), Candidate("U8U8", speedup=1.5, drop=1.2, passed=False),
             Candidate("S8S8", error="ORT cannot load it")]
    d = decide(cands, where="t", max_drop=0.5)
    assert d.chosen == "U8U8"
    v = {c.label: c.verdict for c in d.candidates}
    assert v["U8U8"] == "chosen: none meets the accuracy limit; the smallest drop"
    assert v["S8S8"].startswith("could not be made or run")
    assert decide([Candidate("S8S8", error="x")], where="t").chosen is None


def test_a_tuner_starts_from_the_fastest_format_near_the_smallest_drop():
    # MobileNet-like on a VNNI CPU: no format meets the limit, U8U8 is 1 crop better but has no
    # fast kernel; the tuner can win the crop back, not the speed. A saturating format (60 pp) stays out.
    cands = [Candidate("U8S8", speedup=2.0, drop=12.0, passed=False), Candidate("U8U8", speedup=1.0, drop=11.0, passed=False),
             Candidate("U8S8 reduce_range", speedup=2.1, drop=60.0, passed=False)]
    d = decide(cands, where="t", max_drop=1.0, tuned=True)
    assert d.chosen == "U8S8" and "for the tuner to start from" in d.candidates[0].verdict
    assert decide(cands, where="t", max_drop=1.0).chosen == "U8U8"  # untuned: the smallest drop, as before


def test_a_profile_ranks_formats_and_a_saturating_device_loses_u8s8():
    ratios = {"U8S8": 1.9, "U8U8": 1.6, "U8S8 reduce_range": 1.7, "S8S8": 0.8}
    d = decide(from_profile(ratios, saturates=True, runtime="onnxruntime"), where="t", source="profile")
    assert d.chosen == "U8S8 reduce_range" and d.int8_pays
    assert next(c for c in d.candidates if c.label == "U8S8").verdict == "the device saturates this format's 16-bit sums"
    assert decide(from_profile(ratios, saturates=False, runtime="onnxruntime"), where="t").chosen == "U8S8"
    # OpenVINO has no U8U8 candidate; a profile slower than FP32 everywhere says INT8 does not pay
    slow = decide(from_profile({k: 0.8 for k in ratios}, saturates=False, runtime="openvino"), where="t")
    assert [c.label for c in slow.candidates] == ["U8S8", "U8S8 reduce_range", "S8S8"] and slow.int8_pays is False


def test_format_labels_and_the_decision_round_trip():
    assert format_label({"activation_type": "uint8", "weight_type": "uint8"}) == "U8U8"
    assert format_label({"activation_type": "uint8", "weight_type": "int8", "reduce_range": True}) == "U8S8 reduce_range"
    assert format_label({"activation_type": "int8", "weight_type": "uint8"}) is None
    d = decide(_zen1(), where="t")
    d.extra = {"seconds": 3.0}
    from compressor.steps.quantize.formats import Decision

    back = Decision.from_dict(d.to_dict())
    assert back.to_dict() == d.to_dict() and back.extra == {"seconds": 3.0}
