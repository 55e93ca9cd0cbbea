"""What every accuracy-aware engine shares: the evaluator (a candidate's score against the
FP32 model), the :class:`Trial` record and the :class:`Tuner` (budget, history, best).

Nothing here quantizes: engines make candidates and hand each to :meth:`Tuner.record`
(or :meth:`Tuner.record_error` when the candidate could not be made or scored).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.metrics import compute_metric, metric_drop, metric_info, scoring_labels
from compressor.data.dataset import Dataset
from compressor.errors import CompressorError, DataError, TargetFailed
from compressor.recipe.schema import AccuracyCriterion
from compressor.steps.quantize.noise import NoiseFloor, kl_to_reference, mean_floor, noise_floor, perturb
from compressor.utils.ort_sessions import KEEP_FLOAT_NODES, no_spinning

if TYPE_CHECKING:
    from compressor.context import RunContext
    from compressor.progress import Reporter


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
        no_spinning(so)  # an idle candidate's threads must not take the cores of the next one timed
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
    import gc

    from compressor.bench.latency import measure_latency, settle

    s = _OrtCandidate(path, threads)
    first = data.first(1)
    feeds = {n: first.get(n, next(iter(first.values()))) for n in s.input_names}
    # the trial's evaluation session and a technique's statistics sessions must not be running
    # beside this one (the candidate sessions do not spin; some technique sessions are plain ORT ones)
    gc.collect()
    settle()
    stats, _ = measure_latency(lambda: s.run(feeds), warmup=3, iterations=iterations, min_duration_s=0.0)
    return round(stats.p50, 4)


# ----------------------------------------------------------------------------- evaluation


def counts_from_floor(criterion: AccuracyCriterion, metric: str) -> bool:
    """Whether trials' drops are counted from FP32's noise floor (``agreement_on: noise_floor``
    with top-1 agreement), which then is measured over :data:`FLOOR_SEEDS` seeds."""
    return criterion.agreement_on == "noise_floor" and metric == "top1_agreement"


FLOOR_SEEDS = 3


class Evaluator:
    """Scores a candidate (its first output over ``data``) against the FP32 model.

    ``noise``: FP32's own noise floor on ``data`` (:mod:`~.noise`), for reference metrics.
    With ``top1_agreement`` and ``agreement_on: stable`` (default) a candidate is judged on
    the samples whose FP32 top-1 survives +-1 LSB of input noise; with ``noise_floor`` on all
    samples, its drop counted from that floor (:attr:`drop_base`) instead of from FP32's 100 %;
    :attr:`judged_by` says which."""

    def __init__(self, data: Dataset, metric: str, reference: list[np.ndarray], criterion: AccuracyCriterion,
                 noise: NoiseFloor | None = None):
        self.data, self.metric, self.reference, self.criterion = data, metric, reference, criterion
        info = metric_info(metric)
        self.labels = scoring_labels(metric, data.labels, data.inputs, reference[0].size)
        self.higher_is_better = info.higher_is_better
        self.noise = noise
        self.stable: np.ndarray | None = None
        if (noise is not None and noise.stable is not None and metric == "top1_agreement"
                and criterion.agreement_on == "stable" and noise.stable.any()):
            self.stable = noise.stable
        ref = reference[0].reshape(len(reference[0]), -1)
        self.classes = ref.shape[1] > 1 and ref.ndim == 2 and metric != "mse"
        # the FP32 value; raises DataError when the data cannot provide the metric, before any tuning
        self.baseline = self.score(reference)
        # what a drop is counted from: FP32's own score, or its agreement under input noise
        self.from_floor = noise is not None and counts_from_floor(criterion, metric)
        self.drop_base = noise.value if self.from_floor and noise is not None else self.baseline

    @property
    def judged_by(self) -> str:
        """Which metric judges the trials, in words (the report's ``judged_by``)."""
        if self.stable is not None:
            return (f"{self.metric} on the {int(self.stable.sum())} of {len(self.stable)} samples whose FP32 top-1 "
                    "is stable under +-1 LSB input noise")
        if self.from_floor:
            return (f"{self.metric} on all {len(self.data)} samples, the drop counted from FP32's own agreement under "
                    f"+-1 LSB input noise ({self.drop_base:.4f}), not from 100%")
        return f"{self.metric} on all {len(self.data)} samples"

    def score(self, outputs: list[np.ndarray]) -> float:
        if self.stable is None:
            return compute_metric(self.metric, outputs[0], self.labels, self.reference[0])
        k = self.stable
        return compute_metric(self.metric, outputs[0][k], None if self.labels is None else self.labels[k],
                              self.reference[0][k])

    def evaluate(self, outputs: list[np.ndarray]) -> tuple[float, dict[str, float]]:
        """The judged score and what a trial records beside it: the metric on all samples (when
        the judge is the stable subset) and the softmax KL to FP32 (classification outputs)."""
        extra: dict[str, float] = {}
        if self.stable is not None:
            extra["metric_all"] = round(compute_metric(self.metric, outputs[0], self.labels, self.reference[0]), 6)
        if self.classes:
            extra["kl"] = round(kl_to_reference(self.reference[0], outputs[0]), 6)
        return self.score(outputs), extra

    def drop(self, value: float) -> float:
        """Absolute: points (fractions) or percent (mse); relative: percent of the FP32 value."""
        return metric_drop(self.metric, self.drop_base, value, relative=self.criterion.mode == "relative")

    def passes(self, value: float) -> bool:
        return self.drop(value) <= self.criterion.max_drop + 1e-9

    def output_error(self, outputs: list[np.ndarray]) -> float:
        """Mean squared error to the FP32 output: a finer signal than the metric on small subsets."""
        return float(np.mean((outputs[0].astype(np.float64) - self.reference[0].astype(np.float64)) ** 2))

    def details(self) -> dict[str, Any]:
        """The report's account of how trials were judged (additive ``tuning`` fields)."""
        out: dict[str, Any] = {"judged_by": self.judged_by,
                               "judge": {"metric": self.metric, "samples": "stable" if self.stable is not None
                                         else "all", "count": int(self.stable.sum()) if self.stable is not None
                                         else len(self.data)}}
        if self.from_floor:
            out["judge"]["drop_from"] = {"noise_floor": round(self.drop_base, 6)}
        if self.noise is not None:
            out["noise_floor"] = self.noise.to_dict()
        return out


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
    threads = ctx.recipe.benchmark.threads
    reference = ort_outputs(source, data, threads)
    noise = None
    if not metric_info(metric).needs_labels and metric != "perplexity":
        # FP32 against FP32 under +-1 LSB of input noise: the floor every agreement figure sits on
        # one seed for the stable samples; more for a floor that drops are counted from
        seeds = FLOOR_SEEDS if counts_from_floor(crit, metric) else 1
        floors = []
        for k in range(seeds):
            shaken, how = perturb(data, seed=ctx.seed + k)
            floors.append(noise_floor(metric, reference[0], ort_outputs(source, shaken, threads)[0], how))
        noise = mean_floor(floors)
    return Evaluator(data, metric, reference, crit, noise)


# ----------------------------------------------------------------------------- history


@dataclass
class Trial:
    """One candidate: what was tried, how it scored, where it is.

    ``fallback`` are the nodes this trial newly kept in FP32, ``excluded`` all of them;
    ``info`` is the quantizer's account of the candidate (the report shows the kept trial's);
    ``scores`` what the evaluator measured beside the judged metric (``metric_all``, ``kl``).
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
    scores: dict[str, float] = field(default_factory=dict)
    latency_vs_fp32: float | None = None
    phase: str = "global"

    def to_dict(self) -> dict[str, Any]:
        """The trial as report.json records it."""
        d: dict[str, Any] = {"trial": self.number, "label": self.label, "fallback": self.fallback,
                             "excluded_total": len(self.excluded), "metric": self.metric, "drop": self.drop,
                             "passed": self.passed, "latency_ms": self.latency_ms, "elapsed_s": self.elapsed_s,
                             "phase": self.phase, **self.scores}
        if self.latency_vs_first is not None:
            d["latency_vs_first"] = self.latency_vs_first
        if self.latency_vs_fp32 is not None:
            d["latency_vs_fp32"] = self.latency_vs_fp32
        if self.error is not None:
            d["error"] = self.error
        return d

    def summary(self) -> str:
        return f"#{self.number} {self.label} " + (f"error ({self.error})" if self.error else f"drop {self.drop:.2f}")


# passing trials whose batch-1 latencies differ by less than this share count as equally fast
# (20 timed runs on a shared CPU); beyond it the faster one is kept
SPEED_TOL = 0.10
# seconds between heartbeat lines of a long trial when the output is not a terminal
HEARTBEAT_S = 10.0


@dataclass
class Tuner:
    """Time budget (and optional trial cap), history, the best candidate so far, and progress.

    The budget is ``time_budget_s``: the whole-model variants may use ``global_share`` of it
    (and of ``max_trials`` when set), the per-layer steps the rest (:meth:`global_budget_left`),
    so the FP32 fallback is always reached. Each trial prints a line through ``progress``; a
    long one also prints a heartbeat every :data:`HEARTBEAT_S` when the output is not a terminal."""

    evaluator: Evaluator
    criterion: AccuracyCriterion
    t0: float = field(default_factory=time.perf_counter)
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    notes: list[str] = field(default_factory=list)  # why tuning stopped early, for the report and the error
    progress: Reporter | None = None
    fp32_latency_ms: float | None = None  # batch-1 ORT latency of the FP32 model, timed like the trials
    phase: str = "global"  # global (whole-model variants) | per-layer (sensitivity, precision, fallback)

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    @property
    def budget_s(self) -> float:
        return self.criterion.time_budget_s

    def budget_left(self) -> bool:
        cap = self.criterion.max_trials
        return (cap is None or len(self.trials) < cap) and time.perf_counter() - self.t0 < self.budget_s

    def global_budget_left(self) -> bool:
        """Whether another whole-model variant may run: the first trial always; then only within
        ``global_share`` of the time budget and of ``max_trials`` (the rest is the fallback's)."""
        if not self.trials:
            return True
        c = self.criterion
        if c.max_trials is not None and len(self.trials) >= max(1, math.ceil(c.max_trials * c.global_share)):
            return False
        return self.budget_left() and time.perf_counter() - self.t0 < c.global_share * self.budget_s

    def _elapsed(self) -> float:
        return round(time.perf_counter() - self.t0, 2)

    def say(self, text: str) -> None:
        if self.progress is not None:
            from rich.markup import escape

            self.progress.log(escape(text))  # labels hold [brackets] that are not markup

    @contextlib.contextmanager
    def running(self, what: str, status: Callable[[], str] | None = None, spinner: bool = True) -> Iterator[None]:
        """Around a trial or the sensitivity analysis: a spinner on a terminal (``spinner``:
        False where the caller shows a bar of its own: one live display at a time); elsewhere
        (CI logs, pipes) a plain line every :data:`HEARTBEAT_S` while it runs, so a long trial
        is never silent."""
        if self.progress is None or not self.progress.enabled:
            yield
            return
        if self.progress.console.is_terminal:
            if not spinner:
                yield
                return
            with self.progress.task(f"tuning: {what}"):
                yield
            return
        stop, start = threading.Event(), time.perf_counter()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                more = f", {status()}" if status is not None else ""
                self.say(f"tuning: {what} still running ({time.perf_counter() - start:.0f} s{more}; "
                         f"{self._elapsed():.0f} of {self.budget_s:.0f} s budget used)")

        th = threading.Thread(target=beat, name="tuner-heartbeat", daemon=True)
        th.start()
        try:
            yield
        finally:
            stop.set()
            th.join()

    def record(self, label: str, value: float, *, path: Path | None = None, latency_ms: float | None = None,
               fallback: list[str] | None = None, excluded: list[str] | None = None,
               info: dict[str, Any] | None = None, scores: dict[str, float] | None = None) -> Trial:
        """A scored candidate; it becomes :attr:`best` when it beats the best so far."""
        first = self.trials[0].latency_ms if self.trials else None
        fp32 = self.fp32_latency_ms
        t = Trial(number=len(self.trials) + 1, label=label, metric=round(value, 6),
                  drop=round(self.evaluator.drop(value), 4),  # rounded: ties between equal scores stay ties
                  passed=self.evaluator.passes(value), latency_ms=latency_ms, elapsed_s=self._elapsed(),
                  latency_vs_first=round(latency_ms / first, 3) if (first and latency_ms is not None) else None,
                  latency_vs_fp32=round(latency_ms / fp32, 3) if (fp32 and latency_ms is not None) else None,
                  fallback=list(fallback or []), excluded=list(excluded or []), path=path, info=dict(info or {}),
                  scores=dict(scores or {}), phase=self.phase)
        self.trials.append(t)
        if self._better(t):
            self.best = t
        self.say(self._line(t))
        return t

    def record_error(self, label: str, error: BaseException, *, fallback: list[str] | None = None,
                     excluded: list[str] | None = None) -> Trial:
        """A candidate that could not be made or scored is a trial too: it spends budget and
        its reason goes in the history; it never becomes the best."""
        msg = error.message if isinstance(error, CompressorError) else f"{type(error).__name__}: {error}"
        t = Trial(number=len(self.trials) + 1, label=label, passed=False, elapsed_s=self._elapsed(),
                  error=(msg.splitlines() or [""])[0][:300], fallback=list(fallback or []),
                  excluded=list(excluded or []), phase=self.phase)
        self.trials.append(t)
        self.say(self._line(t))
        return t

    def _line(self, t: Trial) -> str:
        """One plain progress line per trial: number, settings, judged drop, latency, budget."""
        head = f"tuning trial {t.number} [{t.label}]"
        spent = f"{t.elapsed_s:.0f} of {self.budget_s:.0f} s"
        if t.error is not None:
            return f"{head}: error: {t.error[:160]} ({spent})"
        ev = self.evaluator
        parts = [f"{ev.metric} {t.metric:.4f}, drop {t.drop:.2f} (max {self.criterion.max_drop:g})"]
        if ev.stable is not None:
            parts.append(f"on {int(ev.stable.sum())} stable samples; all {t.scores.get('metric_all', 0.0):.4f}")
        if ev.noise is not None:
            parts.append(f"FP32 noise floor {ev.noise.value:.4f}")
        if "kl" in t.scores:
            parts.append(f"KL {t.scores['kl']:.4f}")
        lat = "" if t.latency_ms is None else f"; {t.latency_ms:.2f} ms" + (
            f" = {t.latency_vs_fp32:.2f}x FP32 latency" if t.latency_vs_fp32 is not None else "")
        return f"{head}: {'; '.join(parts)}{lat}; {'passed' if t.passed else 'not passed'} ({spent})"

    def faster_seen(self) -> bool:
        """Whether any scored trial so far ran no slower than FP32 (a fast setting exists)."""
        return any(t.latency_ms is not None and not self.slow(t) for t in self.trials)

    def slow(self, t: Trial) -> bool:
        """Slower than the FP32 model (batch-1 ORT): never kept over a passing trial that is not."""
        return bool(self.fp32_latency_ms and t.latency_ms is not None and t.latency_ms > self.fp32_latency_ms)

    def _better(self, t: Trial) -> bool:
        """A passing trial beats a failing one. Among passing trials speed decides first: one
        slower than FP32 never beats one that is not, and one faster by more than
        :data:`SPEED_TOL` wins; then the fewest FP32 fallbacks, then the smaller drop. Among
        failing ones, the smaller drop."""
        b = self.best
        if b is None or (t.passed and not b.passed):
            return True
        if t.passed != b.passed:
            return False
        if t.passed:
            if self.slow(t) != self.slow(b):
                return not self.slow(t)
            if t.latency_ms and b.latency_ms and abs(t.latency_ms / b.latency_ms - 1.0) > SPEED_TOL:
                return t.latency_ms < b.latency_ms
            if len(t.excluded) != len(b.excluded):
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
                "time_budget_s": c.time_budget_s, **self.evaluator.details(),
                **({"fp32_latency_ms": self.fp32_latency_ms} if self.fp32_latency_ms else {}),
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
