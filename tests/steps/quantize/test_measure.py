"""The measured INT8 format choice on a real (tiny, trained) model: every candidate quantized,
scored and timed against FP32 on the target; the decision in report.json and report.md; a
re-run reads the cached measurement (and measures nothing); a pinned format and a device
profile skip the measurement. No assertion depends on which format this CPU favours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compressor.steps.quantize.formats import RUNTIME_FORMATS


def _quant(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    return next(s for s in report["steps"] if s["kind"] == "quantize")["details"]


def _no_measuring(monkeypatch):
    import compressor.bench.formats as formats

    def refuse(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(formats, "measure_candidates", refuse)


@pytest.fixture
def measure_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_measured_choice_is_the_fastest_passing_candidate_and_a_rerun_reuses_it(cli, write_recipe, tmp_path,
                                                                                measure_cache, monkeypatch):
    recipe = write_recipe(replace={"quantize: {mode: static, calibration: minmax}":
                                   "quantize: {mode: static, calibration: minmax, choose: measure}"})
    res = cli("run", recipe, "--out", tmp_path / "a")
    assert res.exit_code == 0, res.output
    fc = _quant(tmp_path / "a")["format_choice"]
    assert fc["source"] == "measured" and not fc.get("cached")
    cands = {c["label"]: c for c in fc["candidates"]}
    assert list(cands) == list(RUNTIME_FORMATS["onnxruntime"])
    for c in cands.values():
        assert c["speedup"] > 0 and c["p10"] <= c["speedup"] <= c["p90"] and c["drop"] is not None and c["verdict"]
    passing = [c for c in cands.values() if c["passed"]]
    assert passing, "the tiny model keeps accuracy within 5 pp in some format"
    assert fc["chosen"] == max(passing, key=lambda c: c["speedup"])["label"]
    assert fc["int8_pays"] == (cands[fc["chosen"]]["speedup"] >= 1.05)
    assert fc["limit"] == {"max_drop": 5.0, "mode": "absolute", "from": "gates.max_accuracy_drop", "metric": "top1",
                           "samples": 128}
    flat = res.output.replace("\n", "")
    assert fc["line"] in flat and "candidates: U8S8 " in flat  # every candidate on the terminal too
    assert not (tmp_path / "a" / "artifacts" / "00-quantize.formats").exists(), "only the winner is kept"
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    int8 = next(r for r in report["results"] if r["precision"] == "int8")
    assert int8["device"]["quantization"]["choose"] == "measure"
    assert int8["device"]["quantization"]["decision"]["chosen"] == fc["chosen"]
    assert report["int8_verdict"]["line"] in (tmp_path / "a" / "report.md").read_text()
    md = (tmp_path / "a" / "report.md").read_text()
    assert "| format | speed vs FP32 | p10-p90 | metric | drop | verdict |" in md and "measured on this host" in md
    # a warm re-run (new run folder, same CPU, model and settings): no measurement, same choice
    _no_measuring(monkeypatch)
    res = cli("run", recipe, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    again = _quant(tmp_path / "b")["format_choice"]
    assert again["cached"] and again["chosen"] == fc["chosen"] and again["candidates"] == fc["candidates"]
    assert "measured before; cached" in res.output


def test_a_pinned_format_is_kept_and_not_measured(cli, write_recipe, tmp_path, measure_cache, monkeypatch):
    _no_measuring(monkeypatch)
    recipe = write_recipe(replace={"quantize: {mode: static, calibration: minmax}":
                                   "quantize: {mode: static, calibration: minmax, choose: measure, weight_type: uint8}"})
    res = cli("run", recipe, "--out", tmp_path / "run", "-q")
    assert res.exit_code == 0, res.output
    d = _quant(tmp_path / "run")
    assert d["format_choice"]["source"] == "pinned" and d["format_choice"]["chosen"] == "U8U8"
    assert d["weight_type"] == "uint8"


def _profile(path: Path, ratios: dict[str, float], saturates: bool) -> Path:
    path.write_text(json.dumps({
        "kind": "compressor-device-profile", "version": 1, "date": "2026-12-04T12:00:00+00:00",
        "cpu": {"model": "AMD EPYC 7551 32-Core Processor", "vendor": "AuthenticAMD", "family": "23",
                "model_number": "1", "flags": "sse4_2 avx avx2 fma", "machine": "x86_64"},
        "runtimes": {"onnxruntime": {"version": "1.31.1", "formats": {k: {"ratio": v} for k, v in ratios.items()}}},
        "saturation": {"format": "U8S8", "saturates": saturates}, "int8_mac_ratio": {"U8S8": 1.0}}))
    return path


def test_a_profile_where_no_format_pays_is_said_and_dated(cli, write_recipe, tmp_path, measure_cache, monkeypatch):
    _no_measuring(monkeypatch)
    _profile(tmp_path / "zen1.json", {"U8S8": 0.99, "U8U8": 0.65, "U8S8 reduce_range": 0.93, "S8S8": 0.83}, True)
    recipe = write_recipe(replace={"targets: [onnxruntime-cpu]":
                                   "targets: [onnxruntime-cpu]\ndevices: {onnxruntime-cpu: zen1.json}"})
    res = cli("run", recipe, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    fc = _quant(tmp_path / "run")["format_choice"]
    assert fc["source"] == "profile" and fc["chosen"] == "U8S8 reduce_range" and fc["int8_pays"] is False
    assert fc["measured_on"] == "zen1.json (AMD EPYC 7551 32-Core Processor, measured 2026-12-04T12:00:00+00:00)"
    assert fc["line"].startswith("INT8 does not pay on onnxruntime-cpu (zen1.json")
    d = _quant(tmp_path / "run")
    assert d["activation_type"] == "uint8" and d["weight_type"] == "int8" and d["reduce_range"] is True
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    deploy = report["results"][0]["device"]["deploy"]
    assert deploy["source"] == "declared" and deploy["profile"].endswith("zen1.json") and deploy["label"] == "x86-64 AVX2"
    assert "ranked by a measured device profile" in (tmp_path / "run" / "report.md").read_text()


def test_a_missing_profile_is_one_error_line(cli, write_recipe, tmp_path):
    recipe = write_recipe(replace={"targets: [onnxruntime-cpu]":
                                   "targets: [onnxruntime-cpu]\ndevices: {onnxruntime-cpu: nowhere.json}"})
    res = cli("run", recipe, "--out", tmp_path / "run")
    assert res.exit_code != 0 and "device profile" in res.output and "compressor device probe" in res.output
    assert not (tmp_path / "run").exists()
