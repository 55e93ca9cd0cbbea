"""The other quantization engines: NNCF (ONNX backend) and Intel Neural Compressor (torch PT2E).

Both produce a QDQ ONNX model, so every target can run their output. With a
``tuner`` (an accuracy criterion) each runs its own accuracy control and records
its trials in the shared history; without one it is the engine's default PTQ.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.bench.metrics import compute_metric, metric_info
from compressor.errors import BackendUnavailable, CompressorError, StepError
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.accuracy_aware import Tuner, ort_latency_ms, ort_outputs, quantized_nodes
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


def _quiet_engines():
    """NNCF and INC print progress bars and INFO lines; keep the CLI output clean."""
    return quiet("nncf", "neural_compressor", "torch.onnx", "torch.export", stderr=True)


if TYPE_CHECKING:
    from compressor.pipeline import RunContext


def _higher_is_better(tuner: Tuner | None, engine: str) -> None:
    if tuner is not None and not metric_info(tuner.evaluator.metric).higher_is_better:
        raise StepError(f"engine {engine!r} tunes only higher-is-better metrics, not {tuner.evaluator.metric!r}",
                        hint="use engine: onnxruntime for mse, or a metric such as cosine")


def _record(tuner: Tuner, path: Path, label: str, ctx: RunContext, fallback: list[str]) -> dict[str, Any]:
    threads = ctx.recipe.benchmark.threads
    value = tuner.evaluator.score(ort_outputs(path, tuner.evaluator.data, threads))
    lat = ort_latency_ms(path, tuner.evaluator.data, threads, tuner.criterion.latency_iterations)
    return tuner.record({"label": label, "fallback": fallback, "excluded_total": len(fallback)}, value, path, lat)


# ----------------------------------------------------------------------------- NNCF


def nncf_engine(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
    """``nncf.quantize`` (default PTQ); with a criterion, then ``quantize_with_accuracy_control``."""
    try:
        import nncf
        import onnx
    except ImportError as e:
        raise BackendUnavailable("engine 'nncf' needs nncf", hint="pip install 'compressor[openvino]'") from e
    _higher_is_better(tuner, "nncf")
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
        with _quiet_engines():
            q = nncf.quantize(proto, nncf.Dataset(items), **common)
    except nncf.ValidationError as e:  # e.g. an excluded node name that is not in the graph
        raise StepError(f"NNCF rejected the settings: {str(e).strip().splitlines()[0]}",
                        hint="check quantize.nodes_to_exclude against the ONNX node names") from None
    plain = work / "nncf-ptq.onnx"
    with atomic_path(plain) as tmp:
        onnx.save(q, str(tmp))
    details["ptq_seconds"] = round(time.perf_counter() - t0, 2)
    final = plain
    if tuner is not None and not _record(tuner, plain, "nncf.quantize", ctx, [])["passed"]:
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
            with _quiet_engines():
                q2 = nncf.quantize_with_accuracy_control(
                    proto, nncf.Dataset(items), nncf.Dataset(val), validation_fn=validate,
                    max_drop=crit.max_drop / 100.0, drop_type=drop_type, **common,
                    advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                        max_num_iterations=max(1, crit.max_trials - 1)),
                )
        except Exception as e:  # noqa: BLE001 - NNCF raises many types; keep the trial history
            raise StepError(f"nncf.quantize_with_accuracy_control failed: {type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        final = work / "nncf-qwac.onnx"
        with atomic_path(final) as tmp:
            onnx.save(q2, str(tmp))
        reverted = sorted(set(quantized_nodes(plain)) - set(quantized_nodes(final)))
        _record(tuner, final, "nncf.quantize_with_accuracy_control", ctx, reverted)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(final.read_bytes())
    return details


# ----------------------------------------------------------------------------- INC


def inc_engine(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
    """INC 3.x PT2E static INT8 on the torch model (``autotune`` with a tolerable loss under a
    criterion), then the quantized graph exported by torch's dynamo exporter as QDQ ONNX."""
    if ctx.torch_model is None:
        raise StepError("engine 'inc' quantizes the torch model, and this recipe gives an ONNX model",
                        hint="use model.factory + weights, or engine: onnxruntime / nncf")
    try:
        import neural_compressor.torch.quantization  # noqa: F401
        import torch
    except ImportError as e:
        raise BackendUnavailable("engine 'inc' needs neural-compressor 3.x", hint="pip install 'compressor[inc]'") from e
    from compressor.export.onnx_export import example_inputs
    from compressor.models.loader import input_specs

    _higher_is_better(tuner, "inc")
    specs = input_specs(ctx.recipe.model)
    example = example_inputs(specs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[s["name"]])) for s in specs)
    dyn = tuple({0: torch.export.Dim("batch", min=1, max=4096)} for _ in specs)
    calib = ctx.calibration_data()
    names = [s["name"] for s in specs]

    def feeds_args(f: dict[str, np.ndarray]) -> tuple:
        return tuple(torch.from_numpy(np.ascontiguousarray(f.get(n, next(iter(f.values()))))) for n in names)

    def run_fn(m: Any) -> None:
        with torch.no_grad():
            for f, _ in calib.batches(cfg.calibration_batch_size):
                m(*feeds_args(f))

    base = copy.deepcopy(ctx.torch_model).eval()
    details: dict[str, Any] = {"engine": "inc", "format": "QDQ (PT2E, torch dynamo export)",
                               "calibration_samples": len(calib)}
    try:
        q = _inc_quantize(base, args, dyn, cfg, tuner, run_fn, feeds_args, ctx)
    except CompressorError:
        raise
    except Exception as e:  # noqa: BLE001 - INC / torchao raise anything (IndexError on some transformer graphs)
        raise StepError(f"INC PT2E quantization failed: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                        hint="use engine: onnxruntime or nncf for this model") from e
    return _inc_export(q, args, names, dyn, dst, ctx, tuner, details)


def _inc_quantize(base: Any, args: tuple, dyn: tuple, cfg: QuantizeConfig, tuner: Tuner | None, run_fn: Any,
                  feeds_args: Any, ctx: RunContext) -> Any:
    import torch
    from neural_compressor.torch.export import export
    from neural_compressor.torch.quantization import StaticQuantConfig, TuningConfig, autotune, convert, prepare

    with _quiet_engines():
        graph = export(base, args, dynamic_shapes=dyn)
        if graph is None:
            raise StepError("INC could not export the torch model for PT2E quantization (torch.export failed)",
                            hint="use engine: onnxruntime or nncf for this model")
        default = StaticQuantConfig(act_sym=cfg.symmetric_activations, w_granularity=(
            "per_channel" if cfg.per_channel else "per_tensor"))
        if tuner is None:
            q = prepare(graph, default)
            run_fn(q)
            q = convert(q)
        else:
            ev = tuner.evaluator

            def eval_fn(m: Any) -> float:
                with torch.no_grad():
                    outs = [m(*feeds_args(f)) for f, _ in ev.data.batches(64)]
                out = np.concatenate([(o[0] if isinstance(o, (tuple, list)) else o).numpy() for o in outs])
                return ev.score([out])

            # INC's tolerable_loss is relative to the FP32 value; convert an absolute criterion
            tol = tuner.criterion.max_drop / 100.0
            if tuner.criterion.mode == "absolute":
                tol = tol / max(abs(ev.baseline), 1e-12)
            configs = [default, StaticQuantConfig(act_algo="kl"), StaticQuantConfig(w_granularity="per_tensor")]
            tc = TuningConfig(config_set=configs, tolerable_loss=tol, max_trials=min(tuner.criterion.max_trials,
                                                                                       len(configs)))
            q = autotune(graph, tc, eval_fn=eval_fn, run_fn=run_fn, example_inputs=args)
            if q is None:  # INC returns None when no configuration met the loss
                q = prepare(export(copy.deepcopy(ctx.torch_model).eval(), args, dynamic_shapes=dyn), default)
                run_fn(q)
                q = convert(q)
    return q


def _inc_export(q: Any, args: tuple, names: list[str], dyn: tuple, dst: Path, ctx: RunContext, tuner: Tuner | None,
                details: dict[str, Any]) -> dict[str, Any]:
    import warnings

    import torch

    try:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        q = move_exported_model_to_eval(q)  # a PT2E graph has no .eval(); this is its equivalent
    except ImportError:
        pass
    try:
        with atomic_path(dst) as tmp, _quiet_engines(), warnings.catch_warnings():
            # the exporter checks module.training, which exported graphs leave at True
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            torch.onnx.export(q, args, str(tmp), dynamo=True, input_names=names, dynamic_shapes=dyn,
                              external_data=False, opset_version=ctx.recipe.model.opset)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        raise StepError(f"exporting the INC-quantized (PT2E) model to ONNX failed: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                        hint="use engine: onnxruntime or nncf") from e
    if tuner is not None:
        _record(tuner, dst, "inc.autotune", ctx, [])
    return details


ENGINES = {"nncf": nncf_engine, "inc": inc_engine}
