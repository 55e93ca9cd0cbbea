"""One variant per device, or one for all: the cost of deploying the same variant everywhere.

A sweep with ``--devices`` measures every variant on each device kind (rows
``<variant>/<device>/compressed``, each beside its own baseline). Per target, this finds
the best variant on each device (highest speedup over its baseline among the variants
whose gates passed there) and the one variant that loses least on its worst device when
deployed everywhere (the smallest largest speedup loss against each device's best).

    >>> choice = device_choice(report, report.sweep["variants"])     # doctest: +SKIP
    >>> choice["targets"]["onnxruntime-cpu"]["one_for_all"]["variant"]  # doctest: +SKIP
    'ratio0.5-calibrationminmax'
"""

from __future__ import annotations

from typing import Any

from compressor.report.gates import baseline_of, is_baseline
from compressor.report.model import Report


def _speedups(report: Report, passing: set[str]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """target -> device -> variant -> {speedup, accuracy}, for units whose gates passed."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for r in report.results:
        device = getattr(r, "bench_device", None)
        unit = r.variant.rpartition("/")[0]
        if not device or r.status != "ok" or is_baseline(r.variant) or unit not in passing or not r.latency_ms:
            continue
        base = report.result(baseline_of(r.variant), r.target, r.host)
        if base is None or not base.latency_ms:
            continue
        variant = unit.rpartition("/")[0]
        out.setdefault(r.target, {}).setdefault(device, {})[variant] = {
            "speedup": round(base.latency_ms.p50 / r.latency_ms.p50, 3),
            "accuracy": r.accuracy.value if r.accuracy else None}
    return out


def device_choice(report: Report, units: list[dict[str, Any]]) -> dict[str, Any]:
    """Per target: the best variant per device and the one variant to pick for all devices
    (``units``: the sweep's ``variants`` entries, with ``device`` and ``gates_passed``)."""
    devices = sorted({u["device"] for u in units if u.get("device")})
    passing = {u["name"] for u in units if u.get("gates_passed")}
    targets: dict[str, Any] = {}
    for target, per_device in sorted(_speedups(report, passing).items()):
        best = {d: max(per_device[d].items(), key=lambda kv: (kv[1]["speedup"], kv[1]["accuracy"] or 0.0))
                for d in devices if per_device.get(d)}
        everywhere = [v for v in per_device.get(devices[0], {}) if all(v in per_device.get(d, {}) for d in devices)]

        def loss(v: str, d: str) -> float:  # percent of the device's best speedup given up
            return round(100.0 * (1.0 - per_device[d][v]["speedup"] / best[d][1]["speedup"]), 1)

        pick = min(everywhere, key=lambda v: (max(loss(v, d) for d in devices), v)) if everywhere and \
            len(best) == len(devices) else None
        targets[target] = {
            "best": {d: {"variant": v, **m} for d, (v, m) in best.items()},
            "one_for_all": None if pick is None else {"variant": pick, "worst_speedup_loss_pct": max(
                loss(pick, d) for d in devices), "per_device": {d: {
                    **per_device[d][pick], "speedup_loss_pct": loss(pick, d),
                    "accuracy_change": _diff(per_device[d][pick]["accuracy"], best[d][1]["accuracy"])} for d in devices}},
        }
    return {"devices": devices, "targets": targets}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def fleet_markdown(choice: dict[str, Any]) -> str:
    """The per-device table: best variant on each device, and what one variant for all costs."""
    lines = ["Best variant per device, and the cost of one variant for all devices "
             "(speedup over the baseline measured beside it on that device):", ""]
    for target, t in choice["targets"].items():
        pick = t["one_for_all"]
        lines += [f"**{target}**" + (f": one variant for all devices: {pick['variant']} "
                                     f"(worst loss {pick['worst_speedup_loss_pct']}% of a device's best speedup)"
                                     if pick else ": no variant passed the gates on every device"), "",
                  "| device | best variant | speedup | accuracy | one-for-all speedup | loss | accuracy change |",
                  "|---|---|---|---|---|---|---|"]
        for d in choice["devices"]:
            b = t["best"].get(d)
            p = pick["per_device"][d] if pick else None
            lines.append(f"| {d} | {b['variant'] if b else 'none passed'} | {b['speedup'] if b else '-'} | "
                         f"{b['accuracy'] if b else '-'} | {p['speedup'] if p else '-'} | "
                         f"{str(p['speedup_loss_pct']) + '%' if p else '-'} | "
                         f"{p['accuracy_change'] if p and p['accuracy_change'] is not None else '-'} |")
        lines.append("")
    return "\n".join(lines)
