"""report.md / report.html and `compressor report render|compare|merge`."""

from __future__ import annotations

import base64
import json
import html
import re

from compressor.report.gates import record_gates
from compressor.report.html import render_html
from compressor.report.markdown import render_markdown
from compressor.report.model import load_report
from compressor.report.plots import pareto_front
from tests.report.conftest import make_report, make_result, write_report


def _pngs(html: str) -> list[bytes]:
    return [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_self_contained_with_three_plots(tmp_path):
    rep = make_report(samples=True)
    write_report(rep, tmp_path, samples=True)
    html = render_html(rep, tmp_path)
    pngs = _pngs(html)
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "http://" not in html and "https://" not in html
    for title in ("Accuracy vs latency", "Latency per target", "Latency distribution per variant"):
        assert title in html
    # without the raw samples the distribution plot is left out, the others stay
    assert len(_pngs(render_html(make_report(samples=True), tmp_path / "elsewhere"))) == 2


def test_summary_columns_and_lower_is_better(tmp_path):
    md = render_markdown(make_report(base_acc=0.010, comp_acc=0.011, metric="mse"))
    row = next(ln for ln in md.splitlines() if ln.startswith("| compressed"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "+10.00 %" in cells  # drop of a lower-is-better metric: percent worse
    assert "2.00x" in cells and "4.00x" in cells  # speedup (p50 2.0 -> 1.0), compression (4000 -> 1000 B)


def test_pareto_front_follows_metric_direction():
    fast_bad = make_result("a", p50=1.0, acc=0.020, metric="mse")
    slow_good = make_result("b", p50=2.0, acc=0.010, metric="mse")
    dominated = make_result("c", p50=3.0, acc=0.030, metric="mse")
    assert {r.variant for r in pareto_front([fast_bad, slow_good, dominated])} == {"a", "b"}
    top1 = [make_result("a", p50=1.0, acc=0.8), make_result("b", p50=2.0, acc=0.7)]
    assert [r.variant for r in pareto_front(top1)] == ["a"]


def test_report_render_command(tmp_path, cli_runner):
    write_report(make_report(samples=True), tmp_path, samples=True)
    res = cli_runner("report", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report.md").read_text().startswith("# compressor report: demo")
    assert len(_pngs((tmp_path / "report.html").read_text())) == 3
    res = cli_runner("report", tmp_path / "report.json", "--format", "json", "--stdout")
    assert res.exit_code == 0 and json.loads(res.output)["recipe"] == "demo"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    res = cli_runner("report", bad)
    assert res.exit_code == 2 and res.output.count("\n") == 1


def test_compare_says_what_changed(tmp_path, cli_runner):
    a = write_report(make_report(base_p50=2.0, comp_p50=1.0, comp_acc=0.895), tmp_path / "a")
    b = make_report(base_p50=1.5, comp_p50=1.3, comp_acc=0.88)
    b = write_report(b, tmp_path / "b")
    res = cli_runner("report", "compare", a, b)
    assert res.exit_code == 0, res.output
    assert "faster: baseline@onnxruntime-cpu" in res.output
    assert "slower: compressed@onnxruntime-cpu" in res.output
    assert "less accurate: compressed@onnxruntime-cpu" in res.output


def test_merge_one_column_per_device(tmp_path, cli_runner):
    a = write_report(make_report(host="pi5", samples=True), tmp_path / "pi5", samples=True)
    b = write_report(make_report(host="nuc", base_p50=0.5, comp_p50=0.2), tmp_path / "nuc")
    out = tmp_path / "merged" / "merged.json"
    res = cli_runner("report", "merge", a, b, "-o", out)
    assert res.exit_code == 0, res.output
    merged = load_report(out)
    assert [h["host"] for h in merged.hosts] == ["pi5", "nuc"]
    assert len(merged.results) == 4 and merged.result("compressed", "onnxruntime-cpu", "nuc").latency_ms.p50 == 0.2
    md = out.with_suffix(".md").read_text()
    header = next(ln for ln in md.splitlines() if "p50 ms pi5" in ln)
    assert "p50 ms nuc" in header
    assert "| compressed | onnxruntime-cpu | int8 | 1.000 | 0.200 |" in md
    # the samples paths now point from the merged report's folder to the device's files
    assert len(_pngs(render_html(merged, out.parent))) == 3
    assert cli_runner("report", "merge", a, a, "-o", out).exit_code == 2


def test_markdown_and_html_say_the_same_things(tmp_path):
    """Both files are formatted from one document: every section, note and table cell of
    report.md is in report.html too (the plots are HTML's alone)."""
    rep = make_report()
    rep.warnings = ["a warning the user must see"]
    rep.steps = [{"name": "int8", "kind": "quantize", "seconds": 1.5,
                  "details": {"techniques": ["bias correction"], "calibration": "minmax"}}]
    record_gates(rep, {"max_accuracy_drop": 1.0})
    md, page = render_markdown(rep), html.unescape(render_html(rep, tmp_path))
    titles = [ln[3:] for ln in md.splitlines() if ln.startswith("## ")]
    assert titles == ["Results", "Devices and INT8 settings", "Gates", "Steps", "Quantization: int8"]
    assert [t for t in re.findall(r"<h2>(.*?)</h2>", page) if t != "Plots"] == titles
    cells = {c.strip() for ln in md.splitlines() if ln.startswith("| ") for c in ln.strip("|").split("|")}
    assert {"compressed", "+0.50 pp", "2.00x", "max_accuracy_drop", "calibration=minmax"} <= cells
    assert all(f">{c}<" in page for c in cells if c)
    for text in ("warning: a warning the user must see", "Recipe gates: max_accuracy_drop 1.", "bias correction"):
        assert text in md and text in page
