"""Comparing two reports, merging reports from several devices, and the part of a report
that two runs of one recipe must agree on (:func:`comparable_report`, for resume tests).

Merging: every result keeps its (variant, target) and gains ``host``, the host name
of the machine that measured it (``environment.host``; the file name when two
reports come from one host). The merged report lists the devices in ``hosts`` and
is keyed by (variant, target, host); ``device_table`` shows one latency column
per device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.metrics import metric_drop
from compressor.errors import ReportError
from compressor.report.gates import DEFAULT_LATENCY_FLOOR, DEFAULT_LATENCY_TOLERANCE, LATENCY_GATES, latency_allowance
from compressor.report.model import Report, Result


@dataclass
class Change:
    """One (variant, target[, host]) present in both reports."""

    key: str
    p50_a: float | None
    p50_b: float | None
    latency_change_pct: float | None
    allowance_pct: float | None
    speed: str  # faster | slower | same | -
    metric: str | None
    acc_a: float | None
    acc_b: float | None
    accuracy_drop: float | None  # pp (percent for lower-is-better), positive = B is worse
    accuracy: str  # less accurate | more accurate | same | -


def _key(r: Result) -> tuple[str, str, str | None]:
    return (r.variant, r.target, r.host)


def compare_reports(a: Report, b: Report, *, tolerance: float = DEFAULT_LATENCY_TOLERANCE,
                    floor: float = DEFAULT_LATENCY_FLOOR) -> tuple[list[Change], list[str], list[str]]:
    """Changes from ``a`` to ``b``, with the results only in ``a`` and only in ``b``.

    A latency change counts as faster/slower only beyond the same noise allowance
    the ``max_latency_increase`` gate forgives.
    """
    ra = {_key(r): r for r in a.results}
    rb = {_key(r): r for r in b.results}
    changes = []
    for k in [k for k in ra if k in rb]:
        x, y = ra[k], rb[k]
        name = "@".join(p for p in k if p)
        p50a = x.latency_ms.p50 if x.status == "ok" and x.latency_ms else None
        p50b = y.latency_ms.p50 if y.status == "ok" and y.latency_ms else None
        pct = allow = None
        speed = "-"
        if p50a and p50b:
            pct = (p50b / p50a - 1.0) * 100.0
            allow = latency_allowance(x, y, tolerance, floor)
            speed = "slower" if pct > allow else "faster" if pct < -allow else "same"
        metric = acc_a = acc_b = drop = None
        verdict = "-"
        if x.accuracy and y.accuracy and x.accuracy.metric == y.accuracy.metric:
            metric, acc_a, acc_b = x.accuracy.metric, x.accuracy.value, y.accuracy.value
            drop = metric_drop(metric, acc_a, acc_b)
            verdict = "less accurate" if drop > 1e-9 else "more accurate" if drop < -1e-9 else "same"
        changes.append(Change(name, p50a, p50b, pct, allow, speed, metric, acc_a, acc_b, drop, verdict))
    only_a = ["@".join(p for p in k if p) for k in ra if k not in rb]
    only_b = ["@".join(p for p in k if p) for k in rb if k not in ra]
    return changes, only_a, only_b


def merge_reports(reports: list[tuple[Path, Report]], out: Path) -> Report:
    """One report holding every result of ``reports``, each tagged with its device's host."""
    if len(reports) < 2:
        raise ReportError("merge needs at least two reports")
    hosts: list[dict] = []
    results: list[Result] = []
    seen: set[str] = set()
    paths = [p.resolve() for p, _ in reports]
    if len(set(paths)) != len(paths):
        raise ReportError("merge got the same report twice", hint="give each device's report once")
    for path, rep in reports:
        if rep.hosts:  # an already merged report: keep its hosts
            for r in rep.results:
                results.append(_relocated(r, path, out))
            for h in rep.hosts:
                if h.get("host") in seen:
                    raise ReportError(f"{path}: device {h.get('host')!r} is already in the merge")
                seen.add(h.get("host"))
                hosts.append(h)
            continue
        host = str(rep.environment.get("host") or path.parent.name or path.stem)
        if host in seen:  # two reports from one machine (e.g. two runs): tell them apart by file
            host = f"{host}:{path.parent.name}/{path.name}"
        seen.add(host)
        hosts.append({**rep.environment, "host": host, "report": str(path), "recipe": rep.recipe})
        for r in rep.results:
            results.append(_relocated(r.model_copy(update={"host": host}), path, out))
    recipes = sorted({rep.recipe for _, rep in reports})
    limits = [rep.gate_limits for _, rep in reports]
    return Report(recipe=recipes[0] if len(recipes) == 1 else "merged:" + "+".join(recipes),
                  created=max((rep.created or "" for _, rep in reports), default=None) or None,
                  results=results, hosts=hosts,
                  gate_limits=limits[0] if all(lim == limits[0] for lim in limits) else None)


def _relocated(r: Result, src: Path, out: Path) -> Result:
    """Make the result's latency_samples path relative to the merged report's folder."""
    if not r.latency_samples:
        return r
    sample = (src.parent / r.latency_samples).resolve()
    return r.model_copy(update={"latency_samples": os.path.relpath(sample, out.resolve().parent)})


def device_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per (variant, target, precision), one p50 column per device."""
    hosts = [h["host"] for h in report.hosts or []] or sorted({r.host or "-" for r in report.results})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for r in report.results:
        cell = f"{r.latency_ms.p50:.3f}" if r.status == "ok" and r.latency_ms else "failed" if r.status != "ok" else "-"
        rows.setdefault((r.variant, r.target, r.precision), {})[r.host or "-"] = cell
    header = ["variant", "target", "precision"] + [f"p50 ms {h}" for h in hosts]
    return header, [list(k) + [cells.get(h, "-") for h in hosts] for k, cells in rows.items()]


# int8_verdict: derived from latencies (which result was fastest, by how much)
VOLATILE_KEYS = {"created", "seconds", "cached", "latency_ms", "throughput_per_s", "paired", "int8_verdict"}


def comparable_report(report: dict[str, Any]) -> dict[str, Any]:
    """A report.json without what legitimately differs between two runs of one recipe:
    timestamps, step durations, the ``cached`` flags, latency and throughput."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE_KEYS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out = strip(report)
    out.get("environment", {}).pop("host", None)
    # speedup gates depend on latency
    out["gates"] = [g for g in out.get("gates", []) if g.get("name") not in LATENCY_GATES]
    return out
