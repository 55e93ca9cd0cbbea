"""The ``quantize`` step: INT8 post-training quantization of the exported ONNX model.

The engine is chosen here, once (:func:`~compressor.steps.quantize.engines.get_engine`). Without
an ``accuracy_criterion`` the engine's plain PTQ runs; with one, the engine tunes under a
:class:`~compressor.steps.quantize.tuning.Tuner` and this step applies the criterion's
failure policy (fail with the full history, or keep the best candidate as a failed gate).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import CompressorError, DataError, StepError
from compressor.recipe.steps.quantize import AccuracyCriterion, QuantizeConfig
from compressor.steps.base import Step
from compressor.steps.quantize.engines import get_engine
from compressor.steps.quantize.formats import candidate_summary, format_label
from compressor.steps.quantize.macs import mac_summary
from compressor.steps.quantize.measure import choose_by_measurement
from compressor.steps.quantize.tuning import Tuner, make_evaluator, ort_latency_ms
from compressor.techniques import in_phase_order
from compressor.utils.io import atomic_path, atomic_write_json

if TYPE_CHECKING:
    from compressor.context import RunContext


class QuantizeStep(Step):
    """INT8 post-training quantization of the exported ONNX model."""

    kind = "quantize"
    domain = "onnx"
    config: QuantizeConfig

    def output_precision(self) -> str:
        return "int8"

    def apply(self, model: Path, ctx: RunContext) -> Path:
        cfg = self.quant_config(self.config)
        engine = get_engine(cfg.engine)
        engine.check(cfg)
        t0 = time.perf_counter()
        dst = ctx.artifacts_dir / f"{self.name}.onnx"
        crit = cfg.accuracy_criterion
        details: dict[str, Any] = {"engine": cfg.engine}
        cfg, made = self._choose_format(model, cfg, ctx, details, dst if crit is None else None)
        if made is not None:
            details.update(made)
        elif crit is None:
            details.update(engine.quantize(model, dst, cfg, ctx))
        else:
            tuner = _start_tuner(model, crit, ctx)
            try:
                details.update(engine.tune(model, dst, cfg, ctx, tuner))
            except DataError:
                raise  # the data cannot score any candidate: not a trial
            except CompressorError as e:
                # the engine gave up (e.g. NNCF raised): that is a failed trial; fail with the history
                tuner.record_error(f"{cfg.engine} (stopped)", e)
                self._fail(ctx, tuner, details, f"accuracy criterion not met ({cfg.engine} stopped: {e.message})", dst)
            details["tuning"] = {**tuner.details(), **details.get("tuning", {})}
            passed = tuner.best is not None and tuner.best.passed
            if not passed:
                if crit.on_failure == "fail" or tuner.best is None:
                    self._fail(ctx, tuner, details, "accuracy criterion not met", dst)
                self._keep_best(dst, tuner, details)
            details["tuning"]["passed"] = passed
        details.update(_what_was_done(dst, details))
        _warn_if_mostly_fp32(details, ctx)
        self.report.details.update(details)
        self.report.seconds = time.perf_counter() - t0
        return dst

    def _choose_format(self, model: Path, cfg: QuantizeConfig, ctx: RunContext, details: dict[str, Any],
                       dst: Path | None) -> tuple[QuantizeConfig, dict[str, Any] | None]:
        """The INT8 format for this step's target(s): measured here (``choose: measure``, one
        target per step), or as the plan chose it (profile, table, pinned); recorded in
        ``details["format_choice"]``. Returns the config to quantize with and, when measured
        afresh and ``dst`` is given, the winner's quantize details: the winner is then already
        at ``dst`` (not made twice)."""
        plans = [ctx.quant_choices[t] for t in (self.targets or []) if t in ctx.quant_choices]
        if not plans:
            return cfg, None
        plan = plans[0]
        if plan.choose != "measure":
            label = format_label(cfg.model_dump())
            record = dict(plan.decision or {"source": plan.choose, "chosen": label})
            record["chosen"] = label  # what the step runs (the recipe's explicit keys win)
            if plan.choose == "table":
                record["line"] = f"{', '.join(self.targets or [])}: {label or 'INT8'} from the table (unmeasured)"
            elif plan.choose == "pinned":
                record["line"] = f"{', '.join(self.targets or [])}: {label or 'INT8'} set by the recipe or target file"
            details["format_choice"] = record
            return cfg, None
        work = ctx.artifacts_dir / f"{self.name}.formats"
        with ctx.progress.task(f"{self.name}: measuring INT8 formats on {plan.spec.name}"):
            decision, path, info = choose_by_measurement(model, cfg, ctx, plan, work)
        ctx.progress.log(("[yellow]" if decision.int8_pays is False else "") + decision.line
                         + (" [dim](measured before; cached)[/]" if decision.cached else ""))
        ctx.progress.log("  candidates: " + "; ".join(candidate_summary(c) for c in decision.candidates))
        details["format_choice"] = decision.to_dict()
        # the plan's record of the choice (what the report shows per result) becomes the measured one
        plan.settings = {**plan.settings, **decision.settings}
        plan.decision = details["format_choice"]
        plan.reason = f"{decision.line} (measured: {decision.measured_on})"
        made = None
        if path is not None and dst is not None:
            with atomic_path(dst) as tmp:
                shutil.copyfile(path, tmp)
            made = info
        shutil.rmtree(work, ignore_errors=True)  # the candidates were measured; only the winner ships
        return cfg.model_copy(update=decision.settings), made

    def _fail(self, ctx: RunContext, tuner: Tuner, details: dict[str, Any], why: str, dst: Path) -> None:
        """Write the full history beside the run (the run stops before report.json) and raise;
        no quantized model is left under the step's output name."""
        c = tuner.criterion
        dst.unlink(missing_ok=True)
        history = ctx.run_dir / f"{self.name}.tuning.json"
        best = tuner.best
        kept = best is not None and best.path is not None and Path(best.path).is_file()
        record = {"trial": best.number, "label": best.label, "drop": best.drop, "path": str(best.path)} if kept else None
        tuning = {**tuner.details(), "passed": False, **({"best": record} if record else {})}
        atomic_write_json(history, {**details, "tuning": tuning})
        self.report.details.update(details, tuning=tuning)
        if kept:
            assert best is not None and best.drop is not None
            accept = f"{math.ceil(best.drop * 100) / 100:g}"
            found = (f"; best model found: trial #{best.number} [{best.label}], {tuner.evaluator.metric} drop "
                     f"{best.drop:.2f}, written to {best.path}")
            hint = (f"keep that model with accuracy_criterion.on_failure: keep_best (shipped with a failed gate), "
                    f"or rerun accepting that drop with max_drop: {accept}; or raise time_budget_s")
        else:
            found = "; no candidate could be scored"
            hint = "raise max_drop or time_budget_s, or set on_failure: keep_best"
        raise StepError(
            f"{why}: {tuner.evaluator.metric} drop <= {c.max_drop} ({c.mode}) not reached in "
            f"{len(tuner.trials)} trial(s), {tuner.details()['seconds']:.0f} s [{tuner.summary_line()}]"
            + "".join(f"; {n}" for n in tuner.notes) + found + f"; full history in {history}",
            hint=hint + (", or lower min_int8_mac_share" if any("min_int8_mac_share" in n for n in tuner.notes) else ""),
        )

    def _keep_best(self, dst: Path, tuner: Tuner, details: dict[str, Any]) -> None:
        best = tuner.best
        assert best is not None
        if best.path is not None and Path(best.path).resolve() != dst.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(best.path, tmp)
        details["tuning"]["kept_trial"] = best.number
        details["gates"] = [{"name": f"{self.name}.accuracy_criterion", "limit": tuner.criterion.max_drop,
                             "value": best.drop, "passed": False,
                             "detail": f"kept trial #{best.number} (on_failure: keep_best)"}]


def _start_tuner(model: Path, crit: AccuracyCriterion, ctx: RunContext) -> Tuner:
    """The tuner: FP32 reference and noise floor on the tuning data, FP32 batch-1 latency timed
    as the trials are (a trial slower than it is never kept over a faster passing one)."""
    tuner = Tuner(make_evaluator(ctx, model, crit, crit.tuning_samples), crit, progress=ctx.progress)
    ev = tuner.evaluator
    tuner.fp32_latency_ms = ort_latency_ms(model, ev.data, ctx.recipe.benchmark.threads, crit.latency_iterations)
    floor = f"; FP32 noise floor {ev.noise.value:.4f} ({ev.noise.perturbation})" if ev.noise is not None else ""
    tuner.say(f"tuning: max drop {crit.max_drop:g} of {ev.metric}, judged by {ev.judged_by}{floor}; FP32 "
              f"{tuner.fp32_latency_ms:.2f} ms; budget {crit.time_budget_s:.0f} s"
              + (f" or {crit.max_trials} trials" if crit.max_trials else ""))
    return tuner


def _what_was_done(dst: Path, details: dict[str, Any]) -> dict[str, Any]:
    """The report's account of the step: the techniques applied, and from the model itself the
    compute nodes left in FP32 and the share of MACs in INT8."""
    out: dict[str, Any] = {"techniques": techniques(details)}
    try:
        out["macs"] = mac_summary(dst)
    except Exception as e:  # noqa: BLE001 - an account that cannot be made must not fail a finished step
        out["macs"] = {"error": f"{type(e).__name__}: {str(e)[:160]}"}
    return out


MOSTLY_FP32 = 0.5  # under this share of MACs in INT8, a tuned model is called mostly FP32


def _warn_if_mostly_fp32(details: dict[str, Any], ctx: RunContext) -> None:
    """An accuracy-aware run that met its criterion by falling most of the model back to FP32
    says so (the criterion passed; the speed-up it was for is unlikely), in the terminal and
    in the step's details (``mostly_fp32``)."""
    share = (details.get("macs") or {}).get("int8_mac_share")
    if share is None or "tuning" not in details or share >= MOSTLY_FP32:
        return
    n = len(details["macs"].get("fp32_compute_nodes") or [])
    line = (f"the accuracy criterion was met with only {share:.0%} of MACs in INT8 ({n} compute node(s) kept "
            "FP32): expect little speed-up; accuracy_criterion.min_int8_mac_share refuses such a model")
    details["mostly_fp32"] = line
    ctx.progress.log(f"[yellow]{line}[/]")


def techniques(details: dict[str, Any]) -> list[str]:
    """What the kept model was made with, in words, from the engine's details."""
    d = details
    mode = d.get("mode", "static")
    out = [f"{d.get('engine', '?')} {mode} INT8" + (f" ({d['format']})" if d.get("format") else "")]
    if mode == "static" and d.get("calibration"):
        out.append(f"{d['calibration']} calibration" + (" (moving average)" if d.get("moving_average") else ""))
    if "per_channel" in d:
        out.append("per-channel weights" if d["per_channel"] else "per-tensor weights")
    if d.get("activation_type") and d.get("weight_type"):
        short = {"uint8": "U8", "int8": "S8", "dynamic": "dynamic"}
        out.append(f"{short.get(d['activation_type'], d['activation_type'])} activations / "
                   f"{short.get(d['weight_type'], d['weight_type'])} weights")
    if d.get("reduce_range"):
        out.append("reduce_range (7-bit weights)")
    if d.get("preset"):
        out.append(f"NNCF preset {d['preset']}")
    for t in in_phase_order():  # the registered techniques, in the order they were applied
        line = t.describe(d)
        if line:
            out.append(line)
    for t in d.get("extra_techniques", []):
        out.append(t)
    excluded = d.get("nodes_excluded") or []
    if excluded:
        out.append(f"FP32 fallback of {len(excluded)} node(s)")
    tuning = d.get("tuning") or {}
    if tuning.get("trials"):
        out.append(f"accuracy-aware tuning: {len(tuning['trials'])} trial(s)"
                   + (f", kept #{tuning['kept_trial']}" if tuning.get("kept_trial") else ""))
    return out
