"""torch -> ONNX export with the dynamo exporter, plus the parity check against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ExportError, ParityError
from compressor.metrics import compare_outputs
from compressor.models.loader import example_inputs
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


def export_onnx(
    model: Any,
    path: str | Path,
    input_specs: list[dict[str, Any]],
    *,
    output_names: list[str] | None = None,
    opset: int = 18,
    sample: dict[str, np.ndarray] | None = None,
) -> Path:
    """Export ``model`` to a single-file ONNX model with dynamic axes.

    ``input_specs``: ``[{"name", "shape", "dtype", "dynamic": {axis: name}}]``; the
    batch axis (0) is always dynamic. Written atomically.
    """
    import torch

    model = model.eval()
    feeds = sample or example_inputs(input_specs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[s["name"]])) for s in input_specs)
    dynamic_shapes = []
    for s in input_specs:
        axes = {0: "batch", **{int(k): v for k, v in (s.get("dynamic") or {}).items()}}
        dynamic_shapes.append({a: torch.export.Dim(n if n.isidentifier() else f"d{a}", min=1) for a, n in axes.items()})
    path = Path(path)
    try:
        with atomic_path(path) as tmp, quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", ignore_warnings=True):
            torch.onnx.export(
                model,
                args,
                str(tmp),
                dynamo=True,
                input_names=[s["name"] for s in input_specs],
                output_names=output_names,
                dynamic_shapes=tuple(dynamic_shapes),
                external_data=False,
                opset_version=opset,
                verbose=False,
            )
    except Exception as e:  # the exporter raises many types; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"exporting the model to ONNX failed: {type(e).__name__}: {first}",
            hint="check that the model runs on model.input_shape and avoids data-dependent control flow",
        ) from e
    return path


def torch_outputs(model: Any, feeds: dict[str, np.ndarray], input_names: list[str]) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names])
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, torch.Tensor):
        out = [out]
    flat = []
    for o in out:
        if isinstance(o, (tuple, list)):
            flat.extend(o)
        else:
            flat.append(o)
    return [o.detach().float().numpy() for o in flat if o is not None]


def check_export_parity(
    model: Any, onnx_path: Path, feeds: dict[str, np.ndarray], *, atol: float = 1e-3, min_agreement: float = 0.99
) -> dict[str, float]:
    """Run torch and ONNX Runtime on the same inputs; raise ParityError beyond tolerance."""
    import onnxruntime as ort

    names = list(feeds)
    ref = torch_outputs(model, feeds, names)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    out = sess.run(None, feeds)
    res = compare_outputs(ref, [np.asarray(o, dtype=np.float32) for o in out])
    scale = max(1.0, max(float(np.max(np.abs(r))) for r in ref if r.size))
    res["passed"] = bool(res["max_abs_diff"] <= atol * scale and res.get("top1_agreement", 1.0) >= min_agreement)
    if not res["passed"]:
        raise ParityError(
            f"the exported ONNX model disagrees with torch: max abs diff {res['max_abs_diff']:.3g} "
            f"(tolerance {atol * scale:.3g}), top-1 agreement {res.get('top1_agreement', 1.0):.3f}",
            hint="the model may use an op the exporter translates differently; try another opset (model.opset)",
        )
    return res
