"""What report.md and report.html say, built once from a report: titled sections of text,
labelled notes, bullet lists and tables. ``markdown.py`` and ``html.py`` only format it, so
the two files (and the terminal, which reads :func:`summary_rows` and :func:`device_notes`)
cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field

from compressor.metrics import metric_drop
from compressor.report.gates import BASELINE_VARIANT, baseline_of
from compressor.report.model import Report, Result
from compressor.report.quantization import FORMAT_COLUMNS, TRIAL_COLUMNS, quantize_summaries

__all__ = ["COLUMNS", "LLM_COLUMNS", "Bullets", "Note", "Section", "Table", "Text", "build_document",
           "device_notes", "fmt_size", "llm_rows", "summary_rows"]

#: marks an accuracy computed with other kernels than the deploy device's
HOST_KERNELS_MARK = "†"

COLUMNS = ["variant", "target", "precision", "metric", "accuracy", "drop", "p50_ms", "p90_ms", "p99_ms", "speedup",
           "size", "compression", "parity", "pareto", "status"]
_LEFT = frozenset({"variant", "target", "precision", "metric", "parity", "status"})

LLM_COLUMNS = ["variant", "target", "precision", "perplexity", "ppl_increase", "agreement", "prefill_ms",
               "decode_tok_s", "decode_speedup", "peak_rss", "size", "size_vs_fp32"]
LLM_NOTE = ("Perplexity: sliding windows over the recipe's text (increase against FP32 on the same target); "
            "agreement: greedy next-token agreement with FP32 on FP32's own greedy continuations; prefill_ms: "
            "p50 of one prompt with an empty KV cache; decode: batch-1 greedy tokens/s with the KV cache; "
            "peak_rss: the measuring process after loading the model.")


@dataclass
class Text:
    """A paragraph; ``quiet`` ones are explanations (smaller in HTML)."""

    text: str
    quiet: bool = False


@dataclass
class Note:
    """A labelled line: the label in bold."""

    label: str
    text: str


@dataclass
class Bullets:
    items: list[str | Note]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    left: frozenset[str] = frozenset()  # columns aligned left in HTML


Block = Text | Note | Bullets | Table


@dataclass
class Section:
    """``title`` None: the page's opening lines. ``plots``: where HTML puts the report's plots."""

    title: str | None
    blocks: list[Block] = field(default_factory=list)
    plots: bool = False


def fmt_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def build_document(report: Report) -> list[Section]:
    env = report.environment
    opening: list[Block] = []
    if report.created:
        opening.append(Text(f"Created {report.created}."))
    if env:
        opening.append(Text(f"Machine: {env.get('cpu', '?')} ({', '.join(env.get('cpu_flags', [])) or 'no special flags'}"
                            f"), {env.get('threads', '?')} threads; runtimes: "
                            + ", ".join(f"{k} {v}" for k, v in env.get("runtimes", {}).items()) + "."))
    doc = [Section(None, opening)]
    if report.hosts:
        doc += _hosts(report)
    doc.append(Section("Results", [
        Text("Speedup and compression are against the baseline on the same target; drop is in percentage points "
             "(percent worse for lower-is-better metrics such as mse); parity is pass/fail against the FP32 model "
             "the variant was made from (itself for FP32 variants, the FP32 model it was quantized from for INT8 "
             "ones) with the top-1 agreement. `pareto` marks the results no other result beats on both p50 latency "
             "and accuracy. Latency is per call at the benchmark batch size; p50_rse (relative standard error of "
             "the p50) is in report.json.", quiet=True),
        Table(COLUMNS, [[row.get(c, "") for c in COLUMNS] for row in summary_rows(report)], _LEFT)]))
    notes = device_notes(report)
    if notes:
        doc.append(Section("Devices and INT8 settings", [Bullets(list(notes))]))
    if any(r.llm is not None for r in report.results):
        doc.append(_llm_section(report))
    gates: list[Block] = []
    if report.gate_limits:
        gates.append(Text("Recipe gates: " + ", ".join(f"{k} {v:g}" for k, v in report.gate_limits.items()) + "."))
    if report.gates:
        gates.append(Table(["gate", "limit", "value", "result", "detail"],
                           [[g.name, f"{g.limit:g}", "-" if g.value is None else f"{g.value:g}",
                             "pass" if g.passed else "FAIL", g.detail] for g in report.gates],
                           frozenset({"gate", "result", "detail"})))
    if gates:
        doc.append(Section("Gates", gates))
    doc.append(Section("Plots", plots=True))
    if report.steps:
        doc.append(Section("Steps", [Table(["step", "kind", "seconds", "details"], [
            [str(s.get("name", "")), str(s.get("kind", "")), f"{s.get('seconds', 0) or 0:.1f}",
             ", ".join(f"{k}={v}" for k, v in (s.get("details") or {}).items() if not isinstance(v, (dict, list)))]
            for s in report.steps], frozenset({"step", "kind", "details"}))]))
    for q in quantize_summaries(report):
        blocks: list[Block] = [Bullets([Note(label, text) for label, text in q["lines"]])]
        if q["formats"]:
            blocks.append(Table(FORMAT_COLUMNS, q["formats"], frozenset({"format", "verdict"})))
        if q["trials"]:
            blocks.append(Table(TRIAL_COLUMNS, q["trials"], frozenset({"label", "note"})))
        doc.append(Section(f"Quantization: {q['name']}", blocks))
    return doc


def _hosts(report: Report) -> list[Section]:
    from compressor.report.combine import device_table

    header, rows = device_table(report)
    hosts = [Note(str(h.get("host")), f"{h.get('cpu', '?')}, {h.get('threads', '?')} threads, "
                  + ", ".join(f"{k} {v}" for k, v in (h.get("runtimes") or {}).items())) for h in report.hosts]
    return [Section("Devices", [Bullets(list(hosts))]),
            Section("p50 latency per device", [Table(header, [list(r) for r in rows], frozenset({header[0]}))])]


def summary_rows(report: Report) -> list[dict[str, str]]:
    """The summary table, shared by markdown, the terminal and HTML."""
    from compressor.report.plots import pareto_front

    front = {id(r) for r in pareto_front(report.results)}
    rows = []
    for r in report.results:
        base = report.result(baseline_of(r.variant), r.target, r.host)
        row = {"variant": r.variant, "target": r.target + (f"@{r.host}" if r.host else ""), "precision": r.precision}
        if r.status == "failed":
            row.update(status=f"FAILED: {r.error}")
            rows.append(row)
            continue
        acc = r.accuracy
        row["metric"] = acc.metric if acc else "-"
        row["accuracy"] = f"{acc.value:.4f}" if acc else "-"
        if acc and r.accuracy_kernels == "host":
            row["accuracy"] += HOST_KERNELS_MARK
        if acc and base and base.accuracy and r is not base:
            d = metric_drop(acc.metric, base.accuracy.value, acc.value)
            row["drop"] = f"{d:+.2f} {'pp' if acc.higher_is_better else '%'}"
        else:
            row["drop"] = "-"
        lat = r.latency_ms
        row["p50_ms"] = f"{lat.p50:.3f}" if lat else "-"
        row["p90_ms"] = f"{lat.p90:.3f}" if lat else "-"
        row["p99_ms"] = f"{lat.p99:.3f}" if lat else "-"
        if r.paired is not None:  # interleaved timing: the median round's ratio [p10-p90 of the rounds]
            row["speedup"] = f"{r.paired.speedup:.2f}x [{r.paired.p10:.2f}-{r.paired.p90:.2f}]"
        else:
            row["speedup"] = (f"{base.latency_ms.p50 / lat.p50:.2f}x" if lat and base and base.latency_ms else "-")
        row["size"] = fmt_size(r.size_bytes)
        row["compression"] = (f"{base.size_bytes / r.size_bytes:.2f}x" if base and base.size_bytes and r.size_bytes else "-")
        row["parity"] = _parity(r)
        row["pareto"] = "*" if id(r) in front else ""
        row["status"] = "ok"
        rows.append(row)
    return rows


def _parity(r: Result) -> str:
    p = r.parity
    if p is None:
        return "-"
    agree = f" {p.top1_agreement:.3f}" if p.top1_agreement is not None else ""
    ref = f" vs {p.reference}" if p.reference and p.reference not in (BASELINE_VARIANT, r.variant) else ""
    return f"{'ok' if p.passed else 'FAIL'}{agree}{ref}"


def _settings(settings: dict) -> str:
    short = {"activation_type": "act", "weight_type": "weights"}
    return ", ".join(f"{short.get(k, k)} {v}" for k, v in settings.items()) or "none"


def device_notes(report: Report) -> list[str]:
    """One line per target: the device it deploys to, the INT8 settings chosen for it and
    why; then a note for accuracies measured with this host's kernels, and the warnings."""
    lines, seen = [], set()
    for r in report.results:
        deploy = (r.device or {}).get("deploy")
        if not deploy or (r.target, r.host) in seen:
            continue
        q = next((x.device.get("quantization") for x in report.results
                  if x.target == r.target and x.host == r.host and x.device and x.device.get("quantization")), None)
        seen.add((r.target, r.host))
        line = f"{r.target}: {deploy.get('label')} ({deploy.get('source')})"
        if q:
            line += f"; INT8 settings filled in: {_settings(q.get('settings') or {})} ({q.get('reason')})"
        lines.append(line)
    if any(r.accuracy_kernels == "host" for r in report.results):
        host = report.environment.get("device", {}).get("label") or report.environment.get("cpu", "this host")
        lines.append(f"{HOST_KERNELS_MARK} accuracy measured with this host's kernels ({host}), not the deploy "
                     "device's: confirm on the device with `compressor bench MODEL --target T --data ...`, or run "
                     "the device's kernel path here with `compressor bench ... --emulate-cpu` (docs/targets.md)")
    for r in report.results:
        if r.accuracy_kernels == "emulated":
            lines.append(f"{r.variant}@{r.target}: accuracy measured under qemu emulating the "
                         f"{(r.device or {}).get('emulated_cpu')} CPU (its INT8 kernel path); latency not measured")
        elif r.accuracy_kernels == "emulated-arm64":
            dev = r.device or {}
            host = dev.get("host_kernels_accuracy")
            lines.append(f"{r.variant}@{r.target}: accuracy from emulated arm64 ({dev.get('emulated_cpu')}): ONNX "
                         "Runtime's aarch64 build under qemu-aarch64"
                         + (f"; this host's kernels gave {host:.4f}" if isinstance(host, (int, float)) else "")
                         + ("; latency measured on this host" if r.latency_ms else "; latency not measured"))
        elif (r.device or {}).get("emulation_unavailable"):
            lines.append(f"{r.variant}@{r.target}: no arm64 emulation: {r.device['emulation_unavailable']}")
    nf = report.noise_floor
    if nf:
        stable = f"; FP32 top-1 stable on {nf['stable_samples']} of {nf['samples']}" if "stable_samples" in nf else ""
        lines.append(f"FP32 noise floor: {nf['metric']} {nf['value']:.4f} of the FP32 model with itself under "
                     f"{nf['perturbation']} ({nf['samples']} samples{stable}): the {nf['metric']} figures above "
                     "cannot be read finer than that")
    if report.int8_verdict:
        lines.append(report.int8_verdict["line"])
    lines += [f"warning: {w}" for w in report.warnings or []]
    return lines


def _llm_section(report: Report) -> Section:
    blocks: list[Block] = [Text(LLM_NOTE, quiet=True)]
    blocks += [Note("Baseline weights", f"{n} (the FP32 baseline is this dequantized model, not an original FP32 "
                    "checkpoint)") for n in sorted({r.llm.note for r in report.results if r.llm and r.llm.note})]
    blocks.append(Table(LLM_COLUMNS, [[row.get(c, "") for c in LLM_COLUMNS] for row in llm_rows(report)],
                        frozenset({"variant", "target", "precision"})))
    return Section("Decoder LLM", blocks)


def llm_rows(report: Report) -> list[dict[str, str]]:
    """Perplexity, agreement, prefill, decode speed, memory and size per (variant, target),
    each against the FP32 baseline on the same target."""
    rows = []
    for r in report.results:
        if r.llm is None:
            continue
        m = r.llm
        base = report.result(baseline_of(r.variant), r.target, r.host)
        b = base.llm if base is not None and base is not r else None
        rows.append({
            "variant": r.variant, "target": r.target, "precision": r.precision,
            "perplexity": f"{m.perplexity:.3f}",
            "ppl_increase": f"{(m.perplexity / b.perplexity - 1) * 100:+.2f}%" if b else "-",
            "agreement": f"{m.next_token_agreement:.3f}" if m.next_token_agreement is not None else "-",
            "prefill_ms": f"{m.prefill_ms.p50:.1f}" if m.prefill_ms else "-",
            "decode_tok_s": f"{m.decode_tokens_per_s:.2f}" if m.decode_tokens_per_s else "-",
            "decode_speedup": (f"{m.decode_tokens_per_s / b.decode_tokens_per_s:.2f}x"
                               if b and m.decode_tokens_per_s and b.decode_tokens_per_s else "-"),
            "peak_rss": fmt_size(m.peak_rss_bytes),
            "size": fmt_size(r.size_bytes),
            "size_vs_fp32": (f"{r.size_bytes / base.size_bytes * 100:.1f}%"
                             if base is not None and base is not r and base.size_bytes and r.size_bytes else "-"),
        })
    return rows
