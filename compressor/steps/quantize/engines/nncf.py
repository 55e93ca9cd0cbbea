"""NNCF's ONNX backend: ``nncf.quantize``, and ``quantize_with_accuracy_control`` under a criterion.

The output is a QDQ ONNX model, so every target can run it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.metrics import compute_metric
from compressor.errors import BackendUnavailable, StepError
from compressor.recipe.steps.quantize import QuantizeConfig
from compressor.steps.quantize.engines._common import OneFunctionEngine, higher_is_better, quiet_engines, record
from compressor.steps.quantize.tuning import Tuner, quantized_nodes
from compressor.utils.io import atomic_path

if TYPE_CHECKING:
    from compressor.context import RunContext


class NncfEngine(OneFunctionEngine):
    name = "nncf"

    def run(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
        return nncf_quantize(model, dst, cfg, ctx, tuner)



# NNCF accuracy control's iterations when the criterion sets no max_trials (the time budget
# cannot bound NNCF's own loop)
MAX_NNCF_ITERATIONS = 20


def nncf_quantize(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
    """``nncf.quantize`` (default PTQ); with a criterion, then ``quantize_with_accuracy_control``."""
    try:
        import nncf
        import onnx
    except ImportError as e:
        raise BackendUnavailable("engine 'nncf' needs nncf", hint="pip install 'compressor[openvino]'") from e
    higher_is_better(tuner, "nncf")
    proto = onnx.load(str(model))
    names = [i.name for i in proto.graph.input]
    calib = ctx.calibration_data()
    items = [{n: f.get(n, next(iter(f.values()))) for n in names} for f, _ in calib.batches(1)]
    work = ctx.artifacts_dir / f"{dst.stem}.tuning"
    work.mkdir(parents=True, exist_ok=True)
    opts = cfg.nncf
    subset = min(opts.subset_size or len(items), len(items))
    details: dict[str, Any] = {"engine": "nncf", "nncf": nncf.__version__, "format": "QDQ",
                               "calibration_samples": subset, "preset": opts.preset,
                               "bias_correction": opts.bias_correction}
    common = {"subset_size": subset, "fast_bias_correction": opts.bias_correction == "fast",
              "preset": {"performance": nncf.QuantizationPreset.PERFORMANCE,
                         "mixed": nncf.QuantizationPreset.MIXED}[opts.preset]}
    if opts.model_type == "transformer":
        common["model_type"] = nncf.ModelType.TRANSFORMER
        details["model_type"] = "transformer"
    if cfg.nodes_to_exclude:  # validate=True: a name that matches no node is an error, not a no-op
        common["ignored_scope"] = nncf.IgnoredScope(names=list(cfg.nodes_to_exclude), validate=True)
        details["nodes_excluded"] = list(cfg.nodes_to_exclude)
    t0 = time.perf_counter()
    try:
        with quiet_engines():
            q = nncf.quantize(proto, nncf.Dataset(items), **common)
    except nncf.ValidationError as e:  # e.g. an excluded node name that is not in the graph
        raise StepError(f"NNCF rejected the settings: {str(e).strip().splitlines()[0]}",
                        hint="check quantize.nodes_to_exclude against the ONNX node names") from None
    plain = work / "nncf-ptq.onnx"
    with atomic_path(plain) as tmp:
        onnx.save(q, str(tmp))
    details["ptq_seconds"] = round(time.perf_counter() - t0, 2)
    final = plain
    if tuner is not None and not record(tuner, plain, "nncf.quantize", ctx, []).passed:
        ev, crit = tuner.evaluator, tuner.criterion
        # one validation item = one batch of the tuning subset with its labels and FP32 outputs
        val = [(f, y, ev.reference[0][i:i + len(next(iter(f.values())))])
               for i, (f, y) in zip(range(0, len(ev.data), 16), ev.data.batches(16))]

        def validate(m: Any, its: Any) -> tuple[float, list[float]]:
            import onnxruntime as ort

            its = list(its)  # NNCF passes an iterable (its IterationCounter), not a list
            s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            outs = [s.run(None, {n: f.get(n, next(iter(f.values()))) for n in names})[0] for f, _, _ in its]
            per = [compute_metric(ev.metric, o, y, r) for o, (_, y, r) in zip(outs, its)]
            labels = None if its[0][1] is None else np.concatenate([y for _, y, _ in its])
            return compute_metric(ev.metric, np.concatenate(outs), labels, np.concatenate([r for _, _, r in its])), per

        drop_type = nncf.DropType.ABSOLUTE if crit.mode == "absolute" else nncf.DropType.RELATIVE
        try:
            with quiet_engines():
                q2 = nncf.quantize_with_accuracy_control(
                    proto, nncf.Dataset(items), nncf.Dataset(val), validation_fn=validate,
                    max_drop=crit.max_drop / 100.0, drop_type=drop_type, **common,
                    advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                        max_num_iterations=max(1, (crit.max_trials or MAX_NNCF_ITERATIONS) - 1)),
                )
        except Exception as e:  # noqa: BLE001 - NNCF raises many types; keep the trial history
            raise StepError(f"nncf.quantize_with_accuracy_control failed: {type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        final = work / "nncf-qwac.onnx"
        with atomic_path(final) as tmp:
            onnx.save(q2, str(tmp))
        reverted = sorted(set(quantized_nodes(plain)) - set(quantized_nodes(final)))
        record(tuner, final, "nncf.quantize_with_accuracy_control", ctx, reverted)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(final.read_bytes())
    return details
