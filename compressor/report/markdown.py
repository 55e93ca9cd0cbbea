"""report.md: the summary table per (variant, target), gates and steps."""

from __future__ import annotations

from compressor.metrics import metric_drop
from compressor.report.gates import BASELINE_VARIANT, baseline_of
from compressor.report.model import Report, Result
from compressor.report.units import fmt_size
from compressor.report.quantization import FORMAT_COLUMNS, TRIAL_COLUMNS, quantize_summaries

__all__ = ["COLUMNS", "device_notes", "fmt_size", "render_markdown", "summary_rows"]

#: marks an accuracy computed with other kernels than the deploy device's
HOST_KERNELS_MARK = "†"


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


COLUMNS = ["variant", "target", "precision", "metric", "accuracy", "drop", "p50_ms", "p90_ms", "p99_ms", "speedup",
           "size", "compression", "parity", "pareto", "status"]


def _llm_section(report: Report) -> list[str]:
    from compressor.report.llm_table import LLM_COLUMNS, LLM_NOTE, has_llm, llm_notes, llm_rows

    if not has_llm(report):
        return []
    lines = ["", "## Decoder LLM", "", LLM_NOTE, ""]
    lines += [f"**Baseline weights: {n}** (the FP32 baseline is this dequantized model, not an original FP32 "
              "checkpoint)." for n in llm_notes(report)]
    lines += ["", "| " + " | ".join(LLM_COLUMNS) + " |", "|" + "---|" * len(LLM_COLUMNS)]
    lines += ["| " + " | ".join(row.get(c, "") for c in LLM_COLUMNS) + " |" for row in llm_rows(report)]
    return lines


def render_markdown(report: Report) -> str:
    env = report.environment
    lines = [f"# compressor report: {report.recipe}", ""]
    if report.created:
        lines.append(f"Created {report.created}.")
    if env:
        lines.append(f"Machine: {env.get('cpu', '?')} ({', '.join(env.get('cpu_flags', [])) or 'no special flags'}), "
                     f"{env.get('threads', '?')} threads; runtimes: "
                     + ", ".join(f"{k} {v}" for k, v in env.get("runtimes", {}).items()) + ".")
    if report.hosts:
        from compressor.report.combine import device_table

        lines += ["", "## Devices", ""]
        for h in report.hosts:
            lines.append(f"- **{h.get('host')}**: {h.get('cpu', '?')}, {h.get('threads', '?')} threads, "
                         + ", ".join(f"{k} {v}" for k, v in (h.get("runtimes") or {}).items()))
        header, rows = device_table(report)
        lines += ["", "## p50 latency per device", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Results", "", "Speedup and compression are against the baseline on the same target; parity is pass/fail "
              "against the FP32 model the variant was made from (itself for FP32 variants, the FP32 model it was "
              "quantized from for INT8 ones) with the top-1 agreement.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in summary_rows(report):
        lines.append("| " + " | ".join(row.get(c, "") for c in COLUMNS) + " |")
    notes = device_notes(report)
    if notes:
        lines += ["", "## Devices and INT8 settings", ""] + [f"- {n}" for n in notes]
    lines += ["", "`pareto` marks the results no other result beats on both p50 latency and accuracy. Latency is "
              "per call at the benchmark batch size; p50_rse (relative standard error of the p50) is in report.json."]
    lines += _llm_section(report)
    if report.gate_limits:
        lines += ["", "Recipe gates: " + ", ".join(f"{k} {v:g}" for k, v in report.gate_limits.items()) + "."]
    if report.gates:
        lines += ["", "## Gates", "", "| gate | limit | value | result | detail |", "|---|---|---|---|---|"]
        for g in report.gates:
            lines.append(f"| {g.name} | {g.limit:g} | {'-' if g.value is None else f'{g.value:g}'} | "
                         f"{'pass' if g.passed else '**FAIL**'} | {g.detail} |")
    if report.steps:
        lines += ["", "## Steps", "", "| step | kind | seconds | details |", "|---|---|---|---|"]
        for s in report.steps:
            details = ", ".join(f"{k}={v}" for k, v in (s.get("details") or {}).items() if not isinstance(v, (dict, list)))
            lines.append(f"| {s['name']} | {s['kind']} | {s.get('seconds', 0):.1f} | {details} |")
    for q in quantize_summaries(report):
        lines += ["", f"## Quantization: {q['name']}", ""]
        lines += [f"- **{label}**: {text}" for label, text in q["lines"]]
        if q["formats"]:
            lines += ["", "| " + " | ".join(FORMAT_COLUMNS) + " |", "|" + "---|" * len(FORMAT_COLUMNS)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in q["formats"]]
        if q["trials"]:
            lines += ["", "| " + " | ".join(TRIAL_COLUMNS) + " |", "|" + "---|" * len(TRIAL_COLUMNS)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in q["trials"]]
    return "\n".join(lines) + "\n"
