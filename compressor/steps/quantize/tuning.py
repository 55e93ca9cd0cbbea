"""What every accuracy-aware engine shares: the evaluator (a candidate's score against the
FP32 model), the :class:`Trial` record and the :class:`Tuner` (budget, history, best).

Nothing here quantizes: engines make candidates and hand each to :meth:`Tuner.record`
(or :meth:`Tuner.record_error` when the candidate could not be made or scored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.metrics import compute_metric, metric_drop, metric_info, scoring_labels
from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, DataError, TargetFailed
from compressor.recipe.schema import AccuracyCriterion
from compressor.utils.ort_sessions import KEEP_FLOAT_NODES

if TYPE_CHECKING:
    from compressor.context import RunContext


# ----------------------------------------------------------------------------- running candidates


class _OrtCandidate:
    """A plain CPU ONNX Runtime session for scoring candidates (the steps do not use targets:
    the tuner measures on ORT whatever the deployment targets are)."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        try:
            # a node left FP32 must run FP32 (ORT would re-quantize its weight per tensor)
            self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                                disabled_optimizers=list(KEEP_FLOAT_NODES))
        except Exception as e:  # noqa: BLE001 - ORT raises its own types
            raise TargetFailed(f"ONNX Runtime cannot load {Path(path).name}: {str(e).splitlines()[0]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


def ort_outputs(path: Path, data: Dataset, threads: int, batch_size: int = 64) -> list[np.ndarray]:
    """Every output of the ONNX model at ``path`` over ``data``."""
    from compressor.bench.runner import run_batches

    return run_batches(_OrtCandidate(path, threads), data, batch_size)


def ort_latency_ms(path: Path, data: Dataset, threads: int, iterations: int) -> float:
    """Quick batch-1 latency (median of ``iterations`` runs) for the per-trial cost column."""
    from compressor.bench.latency import measure_latency

    s = _OrtCandidate(path, threads)
    first = data.first(1)
    feeds = {n: first.get(n, next(iter(first.values()))) for n in s.input_names}
    stats, _ = measure_latency(lambda: s.run(feeds), warmup=3, iterations=iterations, min_duration_s=0.0)
    return round(stats.p50, 4)


# ----------------------------------------------------------------------------- evaluation


class Evaluator:
    """Scores a candidate (its first output over ``data``) against the FP32 model."""

    def __init__(self, data: Dataset, metric: str, reference: list[np.ndarray], criterion: AccuracyCriterion):
        self.data, self.metric, self.reference, self.criterion = data, metric, reference, criterion
        info = metric_info(metric)
        self.labels = scoring_labels(metric, data.labels, data.inputs, reference[0].size)
        self.higher_is_better = info.higher_is_better
        # the FP32 value; raises DataError when the data cannot provide the metric, before any tuning
        self.baseline = self.score(reference)

    def score(self, outputs: list[np.ndarray]) -> float:
        return compute_metric(self.metric, outputs[0], self.labels, self.reference[0])

    def drop(self, value: float) -> float:
        """Absolute: points (fractions) or percent (mse); relative: percent of the FP32 value."""
        return metric_drop(self.metric, self.baseline, value, relative=self.criterion.mode == "relative")

    def passes(self, value: float) -> bool:
        return self.drop(value) <= self.criterion.max_drop + 1e-9

    def output_error(self, outputs: list[np.ndarray]) -> float:
        """Mean squared error to the FP32 output: a finer signal than the metric on small subsets."""
        return float(np.mean((outputs[0].astype(np.float64) - self.reference[0].astype(np.float64)) ** 2))


def tuning_data(ctx: RunContext, crit: AccuracyCriterion) -> Dataset:
    """The data trials are scored on: the evaluation set, or ``data.train`` when
    ``tuning_data: train`` keeps the evaluation set out of the tuning."""
    return ctx.train_data() if crit.tuning_data == "train" else ctx.evaluation_data()


def make_evaluator(ctx: RunContext, source: Path, crit: AccuracyCriterion, samples: int | None) -> Evaluator:
    """The FP32 reference on the tuning subset (``samples``; all when None)."""
    metric = crit.metric or ctx.recipe.data.metric
    full = tuning_data(ctx, crit)
    data = full.subset(samples, seed=ctx.seed) if samples else full
    if len(data) == 0:
        raise DataError(f"accuracy-aware quantization needs {crit.tuning_data} data",
                        hint=f"set data.{crit.tuning_data}")
    reference = ort_outputs(source, data, ctx.recipe.benchmark.threads)
    return Evaluator(data, metric, reference, crit)


# ----------------------------------------------------------------------------- history


@dataclass
class Trial:
    """One candidate: what was tried, how it scored, where it is.

    ``fallback`` are the nodes this trial newly kept in FP32, ``excluded`` all of them;
    ``info`` is the quantizer's account of the candidate (the report shows the kept trial's).
    A trial whose candidate could not be made or scored has ``error`` set and no score."""

    number: int
    label: str
    passed: bool
    elapsed_s: float
    metric: float | None = None
    drop: float | None = None
    latency_ms: float | None = None
    latency_vs_first: float | None = None
    fallback: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    error: str | None = None
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The trial as report.json records it."""
        d: dict[str, Any] = {"trial": self.number, "label": self.label, "fallback": self.fallback,
                             "excluded_total": len(self.excluded), "metric": self.metric, "drop": self.drop,
                             "passed": self.passed, "latency_ms": self.latency_ms, "elapsed_s": self.elapsed_s}
        if self.latency_vs_first is not None:
            d["latency_vs_first"] = self.latency_vs_first
        if self.error is not None:
            d["error"] = self.error
        return d

    def summary(self) -> str:
        return f"#{self.number} {self.label} " + (f"error ({self.error})" if self.error else f"drop {self.drop:.2f}")


@dataclass
class Tuner:
    """Trial budget, history and the best candidate so far."""

    evaluator: Evaluator
    criterion: AccuracyCriterion
    t0: float = field(default_factory=time.perf_counter)
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    notes: list[str] = field(default_factory=list)  # why tuning stopped early, for the report and the error

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def budget_left(self) -> bool:
        return len(self.trials) < self.criterion.max_trials and time.perf_counter() - self.t0 < self.criterion.timeout_s

    def _elapsed(self) -> float:
        return round(time.perf_counter() - self.t0, 2)

    def record(self, label: str, value: float, *, path: Path | None = None, latency_ms: float | None = None,
               fallback: list[str] | None = None, excluded: list[str] | None = None,
               info: dict[str, Any] | None = None) -> Trial:
        """A scored candidate; it becomes :attr:`best` when it beats the best so far."""
        first = self.trials[0].latency_ms if self.trials else None
        t = Trial(number=len(self.trials) + 1, label=label, metric=round(value, 6),
                  drop=round(self.evaluator.drop(value), 4),  # rounded: ties between equal scores stay ties
                  passed=self.evaluator.passes(value), latency_ms=latency_ms, elapsed_s=self._elapsed(),
                  latency_vs_first=round(latency_ms / first, 3) if (first and latency_ms is not None) else None,
                  fallback=list(fallback or []), excluded=list(excluded or []), path=path, info=dict(info or {}))
        self.trials.append(t)
        if self._better(t):
            self.best = t
        return t

    def record_error(self, label: str, error: BaseException, *, fallback: list[str] | None = None,
                     excluded: list[str] | None = None) -> Trial:
        """A candidate that could not be made or scored is a trial too: it spends budget and
        its reason goes in the history; it never becomes the best."""
        msg = error.message if isinstance(error, CompressorError) else f"{type(error).__name__}: {error}"
        t = Trial(number=len(self.trials) + 1, label=label, passed=False, elapsed_s=self._elapsed(),
                  error=(msg.splitlines() or [""])[0][:300], fallback=list(fallback or []),
                  excluded=list(excluded or []))
        self.trials.append(t)
        return t

    def _better(self, t: Trial) -> bool:
        """A passing trial beats a failing one; among passing trials the one with the fewest
        FP32 fallbacks (the fastest) wins, then the smaller drop; among failing ones, the smaller drop."""
        b = self.best
        if b is None or (t.passed and not b.passed):
            return True
        if t.passed != b.passed:
            return False
        if t.passed and len(t.excluded) != len(b.excluded):
            return len(t.excluded) < len(b.excluded)
        assert t.drop is not None and b.drop is not None
        return t.drop < b.drop - 1e-12

    def summary_line(self) -> str:
        return "; ".join(t.summary() for t in self.trials)

    def details(self) -> dict[str, Any]:
        c = self.criterion
        return {"metric": self.evaluator.metric, "max_drop": c.max_drop, "mode": c.mode, "tuning_data": c.tuning_data,
                "samples": len(self.evaluator.data), "fp32_metric": round(self.evaluator.baseline, 6),
                "trials": [t.to_dict() for t in self.trials], "seconds": self._elapsed(),
                **({"notes": list(self.notes)} if self.notes else {})}


# ----------------------------------------------------------------------------- graph facts


def quantized_nodes(path: Path) -> list[str]:
    """Names of the compute nodes that read a DequantizeLinear output (i.e. run on INT8 inputs)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in g.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and n.name
            and any(i in dq_out for i in n.input)]


def dynamically_quantized_nodes(src: Path, quantized: Path) -> list[str]:
    """Names of the nodes of ``src`` that ORT's dynamic quantizer rewrote in ``quantized``.

    Dynamic quantization leaves no DequantizeLinear to follow: a quantized MatMul becomes
    ``<name>_quant`` (MatMulInteger), a Gather is rewired in place to an INT8 table. So a
    node counts as quantized when ``quantized`` lacks it unchanged (name, op, inputs,
    outputs). ORT first rewrites a Gemm into ``<name>_MatMul`` + ``<name>_Add``: that Gemm
    is quantized only when its MatMul is gone too. The names returned are ``src``'s, the
    ones ``nodes_to_exclude`` takes."""
    import onnx

    def sig(n: onnx.NodeProto) -> tuple:
        return n.op_type, tuple(n.input), tuple(n.output)

    kept = {n.name: sig(n) for n in onnx.load(str(quantized), load_external_data=False).graph.node}
    out = []
    for n in onnx.load(str(src), load_external_data=False).graph.node:
        if not n.name or kept.get(n.name) == sig(n):
            continue
        if n.op_type == "Gemm" and kept.get(f"{n.name}_MatMul", ("",))[0] == "MatMul":
            continue  # rewritten to MatMul + Add, and the MatMul left in FP32
        out.append(n.name)
    return out
