"""The search history of a sweep's Optuna study: each objective by trial number, the
Pareto trials marked (report.html draws it from ``report.sweep["search"]``).

    >>> png = history_plot(report.sweep["search"])   # doctest: +SKIP
"""

from __future__ import annotations

import io
from typing import Any


def history_plot(search: dict[str, Any]) -> bytes | None:
    """One panel per objective: the value of every completed trial by trial number (Pareto
    trials as red stars), failed and pruned trials as ticks on the axis; None without trials."""
    import matplotlib.pyplot as plt

    trials = search.get("trials") or []
    objectives = list(search.get("objectives") or {})
    if not trials or not objectives:
        return None
    front = set(search.get("pareto_trials") or [])
    fig, axes = plt.subplots(len(objectives), 1, figsize=(7, 2.4 * len(objectives)), sharex=True, squeeze=False)
    for ax, obj in zip(axes[:, 0], objectives):
        done = [t for t in trials if t.get("values")]
        for on in (False, True):
            pts = [t for t in done if (t["number"] in front) == on]
            ax.scatter([t["number"] for t in pts], [t["values"][obj] for t in pts], marker="*" if on else "o",
                       s=70 if on else 25, color="tab:red" if on else "tab:blue", zorder=3,
                       label="Pareto trial" if on else "complete")
        lost = [t["number"] for t in trials if not t.get("values")]
        if lost:
            ax.scatter(lost, [min((t["values"][obj] for t in done), default=0.0)] * len(lost), marker="x",
                       color="gray", label="failed or pruned", zorder=2)
        ax.set_ylabel(f"{obj} ({search['objectives'][obj][:3]})")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("Search history: objective values by trial")
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("trial")
    buf = io.BytesIO()  # as report.plots does (which imports this module: no import back)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def search_markdown(search: dict[str, Any]) -> str:
    """The study as report.md lines: every trial (state, parameters, objectives), the Pareto trials."""
    objectives = list(search.get("objectives") or {})
    front = set(search.get("pareto_trials") or [])
    lines = [f"Search ({search.get('sampler')}; objectives: "
             + ", ".join(f"{o} ({d})" for o, d in (search.get("objectives") or {}).items()) + "):", "",
             "| trial | state | settings | " + " | ".join(objectives) + " | Pareto |",
             "|---|---|---|" + "---|" * len(objectives) + "---|"]
    for t in search.get("trials") or []:
        state = t["state"] + (f" (duplicate of {t['duplicate_of']})" if "duplicate_of" in t else "") \
            + (f": {t['error']}" if t.get("error") else "")
        values = [f"{t['values'][o]:.6g}" if t.get("values") else "-" for o in objectives]
        settings = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in t["params"].items())
        lines.append(f"| {t['number']} | {state} | {settings} | " + " | ".join(values)
                     + f" | {'yes' if t['number'] in front else ''} |")
    return "\n".join(lines) + "\n"
