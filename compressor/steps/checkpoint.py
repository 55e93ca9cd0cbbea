"""Checkpoints of torch-domain steps, so ``compressor run --resume`` continues
where an interrupted run stopped.

Layout under ``<run_dir>/checkpoints/<step name>/``:

- ``epoch-NNN.safetensors`` + ``epoch-NNN.state.pt``: model weights, and the
  optimizer/scheduler state (a tensors-and-numbers dict, read with
  ``weights_only=True``) after epoch NNN of the training loop;
- ``history.json``: one line of numbers per finished epoch;
- ``done.safetensors`` + ``done.json``: the step finished; its output model and report.

Weights are saved with their shapes, so a pruned model (fewer channels than the
factory builds) is restored by :func:`load_weights` reshaping the layers first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StepError
from compressor.utils.io import atomic_path, atomic_write_json

if TYPE_CHECKING:
    import torch

    from compressor.context import RunContext


def step_dir(ctx: RunContext, step_name: str) -> Path:
    return ctx.run_dir / "checkpoints" / step_name


def save_weights(module: torch.nn.Module, path: Path, extra: dict[str, torch.nn.Module] | None = None) -> None:
    """Write ``module`` (and ``extra`` modules under ``<key>.`` prefixes) to safetensors, atomically."""
    from safetensors.torch import save_file

    state = {f"model.{k}": v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    for prefix, m in (extra or {}).items():
        state.update({f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in m.state_dict().items()})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_weights(module: torch.nn.Module, path: Path, extra: dict[str, torch.nn.Module] | None = None) -> None:
    """Load what :func:`save_weights` wrote, reshaping layers whose channel counts differ."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    groups: dict[str, dict[str, Any]] = {}
    for k, v in state.items():
        prefix, _, rest = k.partition(".")
        groups.setdefault(prefix, {})[rest] = v
    for prefix, m in {"model": module, **(extra or {})}.items():
        sub = groups.get(prefix, {})
        reshape_to(m, sub)
        try:
            m.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            raise StepError(f"checkpoint {path} does not fit the model: {str(e).splitlines()[0]}",
                            hint="delete the run folder's checkpoints/ and run without --resume") from None


def reshape_to(module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Give every parameter/buffer the shape it has in ``state`` and fix the layers'
    size attributes (Conv/Linear/BatchNorm), the way structured pruning left them."""
    import torch
    from torch import nn

    for name, m in module.named_modules():
        changed = False
        for store in (m._parameters, m._buffers):
            for pname, t in list(store.items()):
                key = f"{name}.{pname}" if name else pname
                if t is None or key not in state or tuple(state[key].shape) == tuple(t.shape):
                    continue
                new = torch.empty(state[key].shape, dtype=t.dtype)
                store[pname] = nn.Parameter(new, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else new
                changed = True
        if not changed:
            continue
        if isinstance(m, nn.modules.conv._ConvNd):
            depthwise = m.groups > 1 and m.groups == m.in_channels
            m.out_channels = m.weight.shape[0]
            m.groups = m.out_channels if depthwise else m.groups
            m.in_channels = m.weight.shape[1] * m.groups
        elif isinstance(m, nn.Linear):
            m.out_features, m.in_features = m.weight.shape
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            m.num_features = (m.weight if m.weight is not None else m.running_mean).shape[0]


# ----------------------------------------------------------------------------- finished steps


def finished(ctx: RunContext, step_name: str, model: torch.nn.Module) -> dict[str, Any] | None:
    """On ``--resume``, load a finished step's output into ``model`` and return its report
    details; None when the step has to run."""
    d = step_dir(ctx, step_name)
    if not (ctx.resume and (d / "done.json").exists() and (d / "done.safetensors").exists()):
        return None
    load_weights(model, d / "done.safetensors")
    details: dict[str, Any] = json.loads((d / "done.json").read_text())
    return details


def mark_finished(ctx: RunContext, step_name: str, model: torch.nn.Module, details: dict[str, Any]) -> None:
    d = step_dir(ctx, step_name)
    save_weights(model, d / "done.safetensors")
    atomic_write_json(d / "done.json", details)  # written last: its presence means "done"
