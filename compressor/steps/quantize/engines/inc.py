"""Intel Neural Compressor 3.x: PT2E static INT8 on the torch model (``autotune`` under a
criterion), exported by torch's dynamo exporter as QDQ ONNX, so every target can run it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.errors import BackendUnavailable, CompressorError, StepError
from compressor.recipe.steps.quantize import QuantizeConfig
from compressor.steps.quantize.engines._common import OneFunctionEngine, higher_is_better, quiet_engines, record
from compressor.steps.quantize.tuning import Tuner
from compressor.utils.io import atomic_path

if TYPE_CHECKING:
    from compressor.context import RunContext


class IncEngine(OneFunctionEngine):
    name = "inc"

    def run(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
        return inc_quantize(model, dst, cfg, ctx, tuner)



def inc_quantize(model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
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

    higher_is_better(tuner, "inc")
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

    with quiet_engines():
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
            tc = TuningConfig(config_set=configs, tolerable_loss=tol, max_trials=min(tuner.criterion.max_trials or len(configs),
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
        with atomic_path(dst) as tmp, quiet_engines(), warnings.catch_warnings():
            # the exporter checks module.training, which exported graphs leave at True
            warnings.filterwarnings("ignore", message="Exporting a model while it is in training mode")
            torch.onnx.export(q, args, str(tmp), dynamo=True, input_names=names, dynamic_shapes=dyn,
                              external_data=False, opset_version=ctx.recipe.model.opset)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types
        raise StepError(f"exporting the INC-quantized (PT2E) model to ONNX failed: {type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                        hint="use engine: onnxruntime or nncf") from e
    if tuner is not None:
        record(tuner, dst, "inc.autotune", ctx, [])
    return details
