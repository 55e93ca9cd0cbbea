"""Evaluation metrics, the one list of their names, and the comparison of outputs with a
reference (parity). Each metric knows whether higher is better, so gates and reports
compute "drop" the right way round. Shared by bench, tuning, report and the recipe schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from compressor.errors import DataError, ParityError


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    needs_labels: bool  # False: compares with the FP32 reference outputs instead
    description: str


METRICS: dict[str, MetricInfo] = {
    "top1": MetricInfo("top1", True, True, "top-1 accuracy (fraction correct)"),
    "macro_f1": MetricInfo("macro_f1", True, True, "macro-averaged F1 over classes"),
    "mse": MetricInfo("mse", False, True, "mean squared error against the target array (lower is better)"),
    "cosine": MetricInfo("cosine", True, False, "mean cosine similarity to the FP32 reference output"),
    "top1_agreement": MetricInfo("top1_agreement", True, False, "fraction of top-1 predictions equal to the FP32 reference"),
    # decoder LLMs only (measured by bench/llm.py, not by compute_metric)
    "perplexity": MetricInfo("perplexity", False, False, "sliding-window perplexity on text (lower is better)"),
}

# the recipe's `metric:` type, built from METRICS so the two cannot disagree
MetricName = Literal[tuple(METRICS)]  # type: ignore[valid-type]


def metric_info(name: str) -> MetricInfo:
    if name not in METRICS:
        raise DataError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}")
    return METRICS[name]


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).astype(np.float64)


def compute_metric(name: str, outputs: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None = None) -> float:
    """Score model ``outputs`` (first output, all samples) with metric ``name``."""
    info = metric_info(name)
    if info.needs_labels and labels is None:
        raise DataError(f"metric {name!r} needs labels, and the evaluation data has none",
                        hint="use a labelled dataset or a reference metric (cosine, top1_agreement)")
    if name == "top1":
        if outputs.ndim != 2:
            raise DataError(f"metric 'top1' needs [N, classes] outputs, got shape {list(outputs.shape)}")
        return float(np.mean(outputs.argmax(1) == labels.reshape(-1)))
    if name == "macro_f1":
        pred, y = outputs.argmax(1), labels.reshape(-1)
        f1s = []
        for c in np.unique(np.concatenate([y, pred])):
            tp = np.sum((pred == c) & (y == c))
            fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return float(np.mean(f1s))
    if name == "mse":
        if int(np.prod(outputs.shape)) != int(np.prod(labels.shape)):
            raise DataError(f"metric 'mse' needs outputs shaped like the targets: {list(outputs.shape)} vs {list(labels.shape)}")
        return float(np.mean((_flat(outputs) - _flat(labels.reshape(outputs.shape))) ** 2))
    if reference is None:
        raise DataError(f"metric {name!r} compares with the FP32 reference outputs, which are missing")
    if name == "cosine":
        a, b = _flat(outputs), _flat(reference)
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return float(np.mean(np.where(denom > 0, (a * b).sum(1) / np.maximum(denom, 1e-30), 1.0)))
    # top1_agreement
    return float(np.mean(outputs.reshape(len(outputs), -1).argmax(1) == reference.reshape(len(reference), -1).argmax(1)))


def metric_drop(name: str, baseline: float, candidate: float, relative: bool = False) -> float:
    """How much worse ``candidate`` is than ``baseline``: percentage points for
    fractions (top1, f1, cosine), percent increase for lower-is-better metrics (mse);
    ``relative``: percent of the baseline for every metric (accuracy-aware ``mode: relative``).

    >>> [round(metric_drop(*args), 6) for args in (("top1", 0.93, 0.92), ("mse", 2.0, 2.5), ("top1", 0.5, 0.4, True))]
    [1.0, 25.0, 20.0]
    """
    higher_is_better = metric_info(name).higher_is_better
    worse = (baseline - candidate) if higher_is_better else (candidate - baseline)
    if relative or not higher_is_better:
        return worse / abs(baseline) * 100.0 if baseline else 0.0
    return worse * 100.0


def scoring_labels(metric: str, labels: np.ndarray | None, inputs: dict[str, np.ndarray],
                   output_size: int) -> np.ndarray | None:
    """What ``metric`` scores outputs against: the labels, except for ``mse`` of a
    single-input model whose labels are missing or not shaped like its outputs: then its
    input (an autoencoder reconstructs its input; class labels are no MSE target)."""
    if metric == "mse" and (labels is None or labels.size != output_size) and len(inputs) == 1:
        return next(iter(inputs.values()))
    return labels

def compare_outputs(ref: list[np.ndarray], out: list[np.ndarray]) -> dict[str, float]:
    """Parity of ``out`` with ``ref``: max abs diff, cosine similarity and top-1 agreement of the first output."""
    if len(ref) != len(out):
        raise ParityError(f"output count differs: reference {len(ref)}, candidate {len(out)}")
    max_abs = 0.0
    for r, o in zip(ref, out):
        if r.shape != o.shape:
            raise ParityError(f"output shape differs: reference {list(r.shape)}, candidate {list(o.shape)}")
        max_abs = max(max_abs, float(np.max(np.abs(r.astype(np.float64) - o.astype(np.float64)))) if r.size else 0.0)
    r0, o0 = ref[0].reshape(len(ref[0]), -1).astype(np.float64), out[0].reshape(len(out[0]), -1).astype(np.float64)
    denom = np.linalg.norm(r0, axis=1) * np.linalg.norm(o0, axis=1)
    cos = float(np.mean(np.where(denom > 0, (r0 * o0).sum(1) / np.maximum(denom, 1e-30), 1.0)))
    result = {"max_abs_diff": max_abs, "cosine": cos}
    if r0.shape[1] > 1:
        result["top1_agreement"] = float(np.mean(r0.argmax(1) == o0.argmax(1)))
    return result


# parity tolerances by precision: max abs diff relative to the reference's largest magnitude
PARITY_TOLERANCE = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 2e-2, "int8": None}
MIN_INT8_AGREEMENT = 0.90


def parity(outputs: list[np.ndarray], reference: list[np.ndarray] | None, precision: str) -> dict[str, Any] | None:
    """:func:`compare_outputs` with the verdict for ``precision``: FP32/BF16/FP16 within a
    tolerance of the reference, INT8 by top-1 agreement (or cosine) of at least
    :data:`MIN_INT8_AGREEMENT`. None without a reference."""
    if reference is None:
        return None
    res: dict[str, Any] = dict(compare_outputs(reference, [o.astype(np.float32) for o in outputs]))
    tol = PARITY_TOLERANCE.get(precision)
    if tol is not None:
        scale = max(1.0, float(np.max(np.abs(reference[0]))))
        res["tolerance"] = tol * scale
        res["passed"] = bool(res["max_abs_diff"] <= tol * scale)
    else:
        res["passed"] = bool(res.get("top1_agreement", res["cosine"]) >= MIN_INT8_AGREEMENT)
    return res


def score_outputs(outputs: list[np.ndarray], *, metric: str, labels: np.ndarray | None,
                  inputs: dict[str, np.ndarray], reference: list[np.ndarray] | None, precision: str,
                  extra_metrics: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A result row's scores of a model's ``outputs`` over a data set (its ``labels`` and
    ``inputs``): ``accuracy`` (the metric), ``parity`` against ``reference``, and with
    ``extra_metrics`` every requested metric by name, the primary one included."""
    def value(name: str) -> float:
        ref = None if reference is None else reference[0]
        return compute_metric(name, outputs[0], scoring_labels(name, labels, inputs, outputs[0].size), ref)

    out: dict[str, Any] = {"accuracy": {"metric": metric, "value": value(metric),
                                        "higher_is_better": metric_info(metric).higher_is_better,
                                        "samples": len(outputs[0])},
                           "parity": parity(outputs, reference, precision)}
    if extra_metrics:
        out["metrics"] = {metric: out["accuracy"]["value"], **{m: value(m) for m in extra_metrics if m != metric}}
    return out
