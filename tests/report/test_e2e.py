"""One real tiny run: run -> report.json/md/html -> check with JUnit against a slower copy -> compare."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from compressor.report.model import load_report
from tests.report.test_schema import validate

TINY = """
import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
"""

RECIPE = """
name: tiny
model: {factory: tiny.py:build, weights: tiny.safetensors, input_shape: [1, 1, 8, 8]}
data: {source: digits, calibration: {split: train, samples: 64}, evaluation: {split: test, samples: 200}}
steps: [{quantize: {mode: static}}]
targets: [onnxruntime-cpu]
benchmark: {warmup: 5, iterations: 50, min_duration_s: 0.1}
gates: {max_accuracy_drop: 50, max_size_bytes: 100000000}
"""


@pytest.mark.slow
def test_real_run_report_and_gate(tmp_path, cli_runner):
    import torch
    from safetensors.torch import save_file

    (tmp_path / "tiny.py").write_text(TINY)
    torch.manual_seed(0)
    ns: dict = {}
    exec(TINY, ns)
    save_file(ns["build"]().state_dict(), tmp_path / "tiny.safetensors")
    (tmp_path / "r.yaml").write_text(RECIPE)
    out = tmp_path / "run"
    res = cli_runner("run", tmp_path / "r.yaml", "--out", out, "-q")
    assert res.exit_code == 0, res.output
    data = json.loads((out / "report.json").read_text())
    validate(data)
    assert data["gate_limits"] == {"max_accuracy_drop": 50.0, "max_size_bytes": 100000000.0}
    rep = load_report(out)
    assert all((out / r.latency_samples).is_file() for r in rep.results)
    assert all(r.latency_ms.p50_rse is not None for r in rep.results)
    html = (out / "report.html").read_text()
    assert len(re.findall(r"data:image/png;base64,", html)) == 3 and "https://" not in html

    # a copy of the run whose every latency is twice as long: a regression far beyond the noise allowance
    slow = tmp_path / "slow.json"
    doubled = json.loads((out / "report.json").read_text())
    for r in doubled["results"]:
        r["latency_ms"] = {k: (v * 2 if k in ("p50", "p90", "p99", "mean", "std") else v) for k, v in r["latency_ms"].items()}
    slow.write_text(json.dumps(doubled))
    junit = tmp_path / "junit.xml"
    res = cli_runner("check", slow, "--baseline", out / "report.json", "--max-latency-increase", "20",
                     "--junit", junit)
    assert res.exit_code == 1, res.output  # the recipe's two gates pass, the latency gate fails
    cases = ET.parse(junit).getroot().find("testsuite").findall("testcase")
    assert len(cases) == 3 and sum(c.find("failure") is not None for c in cases) == 1
    assert "FAIL max_latency_increase" in res.output
    res = cli_runner("check", out / "report.json", "--baseline", slow, "--max-latency-increase", "20")
    assert res.exit_code == 0, res.output  # twice as fast as the baseline
    res = cli_runner("report", "compare", out / "report.json", slow)
    assert res.exit_code == 0 and "slower: none" not in res.output and "faster: none" in res.output, res.output
