"""Weight sparsity (zeros inside unchanged tensors): unstructured magnitude and N:M.

These keep every tensor's shape, so the exported model has the same size and runs
at the same speed on CPU runtimes; the zeros only pay off after compression (zip)
or on hardware with sparse kernels (NVIDIA Ampere+ 2:4 through TensorRT).
"""

from __future__ import annotations

from typing import Any

NOTE = ("sparsity keeps every tensor's shape: the ONNX file is no smaller and CPU runtimes "
        "(ONNX Runtime, OpenVINO) run it no faster; it helps only compressed (zipped) size "
        "and TensorRT 2:4 sparse kernels on NVIDIA Ampere or newer GPUs")


def _flat_in_last(w: Any) -> Any:
    """Weights as [out, ..., in] so groups of M run along input channels (TensorRT's 2:4 layout)."""
    return w.movedim(1, -1) if w.dim() > 2 else w


def magnitude_sparsity(layers: dict[str, Any], ratio: float) -> dict[str, Any]:
    """Zero the ``ratio`` smallest-magnitude weights across ``layers`` (one global threshold)."""
    import torch

    with torch.no_grad():
        all_w = torch.cat([m.weight.detach().abs().flatten() for m in layers.values()])
        k = int(ratio * all_w.numel())
        threshold = all_w.kthvalue(k).values if k > 0 else torch.tensor(-1.0)
        per_layer = {}
        for name, m in layers.items():
            mask = m.weight.abs() > threshold
            m.weight.mul_(mask)
            per_layer[name] = round(1.0 - float(mask.float().mean()), 4)
    return {"sparsity_per_layer": per_layer, "sparsity": _overall(layers)}


def nm_sparsity(layers: dict[str, Any], n: int, m: int) -> dict[str, Any]:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the input channels."""
    import torch

    done, skipped = {}, {}
    with torch.no_grad():
        for name, layer in layers.items():
            w = _flat_in_last(layer.weight)
            if w.shape[-1] % m:
                skipped[name] = f"{w.shape[-1]} input channels is not a multiple of {m}"
                continue
            groups = w.reshape(-1, m)
            keep = groups.abs().topk(n, dim=1).indices
            mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
            masked = (groups * mask).reshape(w.shape)
            layer.weight.copy_(masked.movedim(-1, 1) if layer.weight.dim() > 2 else masked)
            done[name] = round(1.0 - n / m, 4)
    return {"sparsity_per_layer": done, "skipped_layers": skipped, "sparsity": _overall(layers),
            "pattern": f"{n}:{m}"}


def _overall(layers: dict[str, Any]) -> float:
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    total = sum(m.weight.numel() for m in layers.values())
    return round(zeros / max(total, 1), 4)
