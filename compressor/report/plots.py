"""Report plots as PNG bytes (matplotlib, Agg backend, imported only when plotting)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from compressor.report.model import Report, Result


def pareto_front(results: list[Result], *, size: bool = False) -> list[Result]:
    """Results no other result beats on both latency (p50) and accuracy (and, with ``size``,
    artifact size: then only results with a size are compared).

    Accuracy direction follows the metric (mse: lower is better). Only results that
    have both numbers and share the first result's metric are compared.
    """
    pts = [r for r in results if r.status == "ok" and r.accuracy and r.latency_ms
           and (not size or r.size_bytes is not None)]
    if not pts:
        return []
    metric = pts[0].accuracy.metric  # type: ignore[union-attr]
    pts = [r for r in pts if r.accuracy.metric == metric]  # type: ignore[union-attr]

    def score(r: Result) -> float:  # higher is better whatever the metric
        return r.accuracy.value if r.accuracy.higher_is_better else -r.accuracy.value  # type: ignore[union-attr]

    def costs(r: Result) -> tuple[float, ...]:  # lower is better in every coordinate
        c = (r.latency_ms.p50, -score(r))  # type: ignore[union-attr]
        return c + (float(r.size_bytes),) if size else c  # type: ignore[arg-type]

    front = []
    for r in pts:
        cr = costs(r)
        dominated = any(o is not r and all(a <= b for a, b in zip(costs(o), cr)) and costs(o) != cr for o in pts)
        if not dominated:
            front.append(r)
    return front


def label(r: Result) -> str:
    return f"{r.variant}@{r.target}" + (f"@{r.host}" if r.host else "")


def load_samples(r: Result, base_dir: Path | None) -> np.ndarray | None:
    """The raw latency samples of a result, or None when its file is missing or unreadable."""
    if not r.latency_samples or base_dir is None:
        return None
    path = Path(base_dir) / r.latency_samples
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        arr = np.asarray(data, dtype=np.float64).reshape(-1)
    except (OSError, ValueError, TypeError):
        return None
    return arr if arr.size else None


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render_plots(report: Report, base_dir: Path | None = None) -> dict[str, bytes]:
    """Plot title -> PNG bytes. Raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit: works on CI and headless devices
    import matplotlib.pyplot as plt

    ok = [r for r in report.results if r.status == "ok" and r.latency_ms]
    plots: dict[str, bytes] = {}
    if not ok:
        return plots

    # 1. accuracy vs latency, Pareto front marked
    acc = [r for r in ok if r.accuracy]
    if acc:
        front = pareto_front(acc)
        metric = front[0].accuracy.metric if front else acc[0].accuracy.metric  # type: ignore[union-attr]
        acc = [r for r in acc if r.accuracy.metric == metric]  # type: ignore[union-attr]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for r in acc:
            on = r in front
            ax.scatter(r.latency_ms.p50, r.accuracy.value, s=60 if on else 30,  # type: ignore[union-attr]
                       marker="*" if on else "o", color="tab:red" if on else "tab:blue", zorder=3)
            ax.annotate(label(r), (r.latency_ms.p50, r.accuracy.value), fontsize=7,  # type: ignore[union-attr]
                        xytext=(4, 4), textcoords="offset points")
        fs = sorted(front, key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
        ax.plot([r.latency_ms.p50 for r in fs], [r.accuracy.value for r in fs],  # type: ignore[union-attr]
                color="tab:red", lw=1, ls="--", label="Pareto front")
        better = "higher" if acc[0].accuracy.higher_is_better else "lower"  # type: ignore[union-attr]
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel(f"{metric} ({better} is better)")
        ax.set_title("Accuracy vs latency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        plots["Accuracy vs latency (Pareto front in red)"] = _png(fig)

    # 2. latency per target: p50 bars, whiskers up to p99
    targets = list(dict.fromkeys(r.target + (f"@{r.host}" if r.host else "") for r in ok))
    variants = list(dict.fromkeys(r.variant for r in ok))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(targets) * max(1, len(variants) / 2)), 4))
    for i, v in enumerate(variants):
        xs, p50, up = [], [], []
        for j, t in enumerate(targets):
            r = next((x for x in ok if x.variant == v and x.target + (f"@{x.host}" if x.host else "") == t), None)
            if r is not None:
                xs.append(j + i * width)
                p50.append(r.latency_ms.p50)  # type: ignore[union-attr]
                up.append(r.latency_ms.p99 - r.latency_ms.p50)  # type: ignore[union-attr]
        ax.bar(xs, p50, width, label=v, yerr=[np.zeros(len(up)), up], capsize=3)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(targets))], targets, fontsize=8)
    ax.set_ylabel("latency (ms): bar p50, whisker to p99")
    ax.set_title("Latency per target")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    plots["Latency per target (p50, whisker to p99)"] = _png(fig)

    # 3. latency distribution per variant, from the raw samples the run saved
    dists = [(label(r), s) for r in ok if (s := load_samples(r, base_dir)) is not None]
    if dists:
        fig, ax = plt.subplots(figsize=(7, 4))
        hi = max(float(np.percentile(s, 99)) for _, s in dists)  # rare outliers would flatten the plot
        lo = min(float(s.min()) for _, s in dists)
        bins = np.linspace(lo, hi, 60)
        for name, s in dists:
            ax.hist(np.clip(s, lo, hi), bins=bins, histtype="step", lw=1.5, label=f"{name} (n={s.size})")
        ax.set_xlabel("latency (ms), samples above the p99 piled into the last bin")
        ax.set_ylabel("samples")
        ax.set_title("Latency distribution per variant")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        plots["Latency distribution per variant"] = _png(fig)

    # 4. a sweep's search: objective values by trial
    search = (getattr(report, "sweep", None) or {}).get("search")
    if search:
        from compressor.report.history import history_plot

        png = history_plot(search)
        if png:
            plots["Search history (objective values by trial, Pareto trials in red)"] = png
    return plots
