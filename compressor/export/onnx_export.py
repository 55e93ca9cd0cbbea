"""torch -> ONNX export with the dynamo exporter, plus the parity check against torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ExportError, ParityError
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


def example_inputs(input_specs: list[dict[str, Any]], batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random example inputs for export. Batch >= 2 on purpose: a batch-1 example can
    make the dynamo exporter specialise the batch dimension to 1."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in input_specs:
        shape = [batch, *s["shape"][1:]]
        if s["dtype"].startswith("int"):
            out[s["name"]] = rng.integers(0, s.get("high", 2), size=shape).astype(s["dtype"])
        else:
            out[s["name"]] = rng.standard_normal(shape).astype(np.float32)
    return out


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


def compare_outputs(ref: list[np.ndarray], out: list[np.ndarray]) -> dict[str, float]:
    """max abs diff, cosine similarity and top-1 agreement of the first output."""
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
