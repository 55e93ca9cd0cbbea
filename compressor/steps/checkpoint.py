"""Checkpoints of torch-domain steps, so ``compressor run --resume`` continues
where an interrupted run stopped.

Layout under ``<run_dir>/checkpoints/<step name>/``:

- ``epoch-NNN.safetensors`` + ``epoch-NNN.state.pt``: model weights, and the
  optimizer/scheduler state (a tensors-and-numbers dict, read with
  ``weights_only=True``) after epoch NNN of the training loop;
- ``history.json``: one line of numbers per finished epoch;
- ``done.safetensors`` + ``done.json``: the step finished; its output model and report;
- ``pruning_history.json`` (structured pruning): Torch-Pruning's pruning history. On
  resume it is replayed on the step's input model, which then has the pruned
  architecture and takes ``done.safetensors`` with a strict load (no reshaping of
  layers by hand, no pickled modules).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StepError
from compressor.steps.pruning_history import replay
from compressor.utils.io import atomic_path, atomic_write_json

PRUNING_HISTORY = "pruning_history.json"

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
    """Load what :func:`save_weights` wrote (strict: the modules must have the saved architecture)."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    groups: dict[str, dict[str, Any]] = {}
    for k, v in state.items():
        prefix, _, rest = k.partition(".")
        groups.setdefault(prefix, {})[rest] = v
    for prefix, m in {"model": module, **(extra or {})}.items():
        sub = groups.get(prefix, {})
        try:
            m.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            raise StepError(f"checkpoint {path} does not fit the model: {str(e).splitlines()[0]}",
                            hint="delete the run folder's checkpoints/ and run without --resume") from None


# ----------------------------------------------------------------------------- finished steps


def finished(ctx: RunContext, step_name: str, model: torch.nn.Module) -> dict[str, Any] | None:
    """On ``--resume``, load a finished step's output into ``model`` and return its report
    details; None when the step has to run."""
    d = step_dir(ctx, step_name)
    if not (ctx.resume and (d / "done.json").exists() and (d / "done.safetensors").exists()):
        return None
    history = pruning_history(ctx, step_name)
    if history is not None:
        replay(model, history)  # the input gets the architecture the step left
    load_weights(model, d / "done.safetensors")
    details: dict[str, Any] = json.loads((d / "done.json").read_text())
    return details


def pruning_history(ctx: RunContext, step_name: str) -> dict[str, Any] | None:
    """The pruning history a finished step recorded (None: it did not change the architecture)."""
    path = step_dir(ctx, step_name) / PRUNING_HISTORY
    return json.loads(path.read_text()) if path.exists() else None


def mark_finished(ctx: RunContext, step_name: str, model: torch.nn.Module, details: dict[str, Any],
                  pruning: dict[str, Any] | None = None) -> None:
    """Record a finished step: its output weights, its pruning history (when it pruned
    channels: see :mod:`compressor.steps.pruning_history`) and its report details."""
    d = step_dir(ctx, step_name)
    save_weights(model, d / "done.safetensors")
    if pruning is not None:
        atomic_write_json(d / PRUNING_HISTORY, pruning)
    else:
        (d / PRUNING_HISTORY).unlink(missing_ok=True)  # a stale one from an earlier, different run
    atomic_write_json(d / "done.json", details)  # written last: its presence means "done"
