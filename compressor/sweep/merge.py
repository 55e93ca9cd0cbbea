"""One report of a sweep: every variant x target, the Pareto front per target and node,
and the best variant under the recipe's gates.

Rows keep their variant name under the sweep variant's (``ratio0.3-calibrationminmax/compressed``),
so the gates compare each compressed row with the baseline measured beside it, in the same
task on the same node (``report.gates.baseline_of``); ``host`` names the node. Latencies of
different nodes are never compared: the Pareto front is per (target, node).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from compressor.pipeline import write_report
from compressor.recipe.schema import Recipe
from compressor.report.gates import baseline_of, is_baseline, record_gates
from compressor.report.model import Report, Result, load_report
from compressor.utils.int8_formats import PAYS_AT
from compressor.report.plots import pareto_front
from compressor.report.fleet import device_choice, fleet_markdown
from compressor.report.history import search_markdown
from compressor.sweep.pool import Unit
from compressor.sweep.tasks import ATTEMPTS, PREPARE_LOG
from compressor.utils.io import atomic_write_text


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _attempts(run_dir: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in (run_dir / ATTEMPTS).read_text(encoding="utf-8").splitlines() if line]
    except (OSError, ValueError):
        return []


def _variant_rows(u: Unit, rep: Report, node: dict[str, Any]) -> list[Result]:
    rows = []
    for r in rep.results:
        upd: dict[str, Any] = {"variant": f"{u.name}/{r.variant}", "host": node.get("host") or rep.environment.get("host")}
        if node.get("ray_node"):
            upd["ray_node"] = node["ray_node"]
        if u.device:  # the device kind the row was measured on (the key of its Pareto front)
            upd["bench_device"] = u.device
        for field in ("artifact", "latency_samples"):  # relative to the merged report's folder
            if getattr(r, field):
                upd[field] = f"variants/{u.name}/{getattr(r, field)}"
        rows.append(r.model_copy(update=upd))
    return rows


def merge_sweep(recipe: Recipe, units: list[Unit], out: Path, outcomes: dict[str, dict[str, Any]],
                search: dict[str, Any] | None = None) -> Report:
    """Merge the units' reports in ``out/variants`` into ``out/report.json`` (+ .md/.html);
    ``search``: the Optuna study's summary (``sweep.search``)."""
    results: list[Result] = []
    summary: list[dict[str, Any]] = []
    hosts: dict[str, dict[str, Any]] = {}
    for v in units:
        rd = out / "variants" / v.name
        attempts = _attempts(rd)
        entry: dict[str, Any] = {"name": v.name, "settings": v.variant.settings, "run_dir": f"variants/{v.name}",
                                 "attempts": {p: sum(a["phase"] == p for a in attempts) for p in ("prepare", "benchmark")}}
        if (rd / "report.json").is_file():
            rep = load_report(rd)
            node = _read_json(rd / "sweep_node.json", {})
            results += _variant_rows(v, rep, node)
            hosts.setdefault(node.get("host") or "?", {**rep.environment, "host": node.get("host")})
            log = _read_json(rd / PREPARE_LOG, [])
            entry.update(status="ok", host=node.get("host"), ray_node=node.get("ray_node"), detected=node.get("detected"),
                         gates_passed=all(g.passed for g in rep.gates),
                         shared_steps_reused=sum(1 for w in log if w.get("shared")),
                         steps_run=sum(1 for w in log if not w.get("reused")))
        else:
            o = outcomes.get(v.name, {"error": "did not run"})
            error = f"variant failed ({o.get('phase', '?')}): {o.get('error')}"
            entry.update(status="failed", error=error)
            results += [Result.model_validate({"variant": f"{v.name}/compressed", "target": t, "precision": "-",
                                               "status": "failed", "error": error,
                                               **({"bench_device": v.device} if v.device else {})})
                        for t in recipe.targets]
        if v.device:
            entry.update(variant=v.variant.name, device=v.device)
        summary.append(entry)
    report = Report(recipe=recipe.name, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    results=results, hosts=list(hosts.values()) or None)
    record_gates(report, recipe.gates.model_dump())
    sweep = {"variants": summary, "pareto": _pareto(results), "best": _best(report, summary),
             "shared_steps_reused": sum(e.get("shared_steps_reused", 0) for e in summary)}
    if any(u.device for u in units):
        sweep["devices"] = device_choice(report, summary)
    if search:
        sweep["search"] = search
    report = report.model_copy(update={"sweep": sweep})
    write_report(report, out)
    atomic_write_text(out / "report.md", (out / "report.md").read_text(encoding="utf-8") + sweep_markdown(sweep))
    return report


def _pareto(results: list[Result]) -> dict[str, list[str]]:
    """Non-dominated rows (accuracy, p50 latency, size) per target and device (or node), by variant name."""
    groups: dict[str, list[Result]] = {}
    for r in results:
        if r.status == "ok":
            groups.setdefault(f"{r.target}@{_where(r)}", []).append(r)
    return {k: [r.variant for r in pareto_front(rows, size=True)] for k, rows in sorted(groups.items())}


def _best(report: Report, summary: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target (and device): the compressed row with the highest speedup over its own baseline
    among the variants whose every gate passed (accuracy breaks ties); None when none passed.
    ``pays``: False when even that row is under PAYS_AT x its baseline (the FP32 model is then
    the fastest option measured, and the sweep says so instead of naming a slower "best")."""
    passing = {e["name"] for e in summary if e.get("gates_passed")}  # its own run's gates (as `compressor run`)
    best: dict[str, Any] = {}
    for r in report.results:
        if r.status != "ok" or is_baseline(r.variant) or not r.latency_ms or r.variant.rpartition("/")[0] not in passing:
            continue
        base = report.result(baseline_of(r.variant), r.target, r.host)
        if base is None or not base.latency_ms:
            continue
        # the paired (interleaved) ratio where the run measured it, as the gates use
        speedup = r.paired.speedup if r.paired else base.latency_ms.p50 / r.latency_ms.p50
        acc = r.accuracy.value if r.accuracy else 0.0
        key = r.target + (f"@{r.bench_device}" if getattr(r, "bench_device", None) else "")
        cur = best.get(key)
        if cur is None or (speedup, acc) > (cur["speedup"], cur["accuracy"] or 0.0):
            best[key] = {"variant": r.variant, "speedup": round(speedup, 3),
                         "accuracy": r.accuracy.value if r.accuracy else None, "size_bytes": r.size_bytes,
                         "host": r.host, "pays": speedup >= PAYS_AT}
    keys = {r.target + (f"@{r.bench_device}" if getattr(r, "bench_device", None) else "") for r in report.results}
    return {t: best.get(t) for t in sorted(keys)}


def best_line(b: dict[str, Any] | None) -> str:
    """One line for a target's best variant (``_best``'s entry), saying when none is faster than FP32.

    >>> best_line({"variant": "v1/compressed", "speedup": 0.82, "accuracy": 0.9, "host": "h", "pays": False})
    'no variant is faster than its FP32 baseline: the fastest passing, v1/compressed, ran 0.82x (accuracy 0.9, on h); the FP32 baseline is the fastest option measured'
    """
    if b is None:
        return "no variant passed the recipe's gates"
    where = f"accuracy {b['accuracy']}" + (f", on {b['host']}" if b.get("host") else "")
    if b.get("pays", True):
        return f"{b['variant']} ({b['speedup']}x, {where})"
    return (f"no variant is faster than its FP32 baseline: the fastest passing, {b['variant']}, ran "
            f"{b['speedup']}x ({where}); the FP32 baseline is the fastest option measured")


def _where(r: Result) -> str:
    return getattr(r, "bench_device", None) or str(r.host)


def sweep_markdown(sweep: dict[str, Any]) -> str:
    lines = ["", "## Sweep", "", "| variant | settings | status | node | attempts (prepare/bench) | shared steps reused |",
             "|---|---|---|---|---|---|"]
    for e in sweep["variants"]:
        settings = ", ".join(f"`{k}={v}`" for k, v in e["settings"].items())
        att = e["attempts"]
        lines.append(f"| {e['name']} | {settings} | {e['status'] if e['status'] == 'ok' else e.get('error')} | "
                     f"{e.get('host') or '-'} | {att['prepare']}/{att['benchmark']} | {e.get('shared_steps_reused', '-')} |")
    lines += ["", "Pareto front (accuracy, p50 latency, size; per target and device, or node):", ""]
    lines += [f"- {k}: {', '.join(v) or '-'}" for k, v in sweep["pareto"].items()]
    lines += ["", "Best variant under the recipe's gates (highest speedup over its own baseline):", ""]
    lines += [f"- {t}: {best_line(b)}" for t, b in sweep["best"].items()]
    if sweep.get("devices"):
        lines += ["", fleet_markdown(sweep["devices"])]
    if sweep.get("search"):
        lines += ["", search_markdown(sweep["search"])]
    return "\n".join(lines) + "\n"
