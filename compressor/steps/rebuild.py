"""The result of a chain of torch-domain steps, stored as data and rebuilt on resume.

A pruned or distilled module is not the architecture the factory builds, and storing
the module itself would mean pickling code. Instead the chain's result is two files:

- ``<stem>.safetensors``: its weights;
- ``<stem>.structure.json``: the architecture edits the steps made, in order (each
  step's :attr:`~compressor.steps.base.Step.structure`): Torch-Pruning pruning
  histories, and a distilled student's factory.

:func:`rebuild` replays the edits on the factory-built model and loads the weights
strictly, so ``compressor run --resume`` gets the torch model back (for targets that
consume it, such as ExecuTorch) without running the steps again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import StepError
from compressor.steps.checkpoint import load_weights, save_weights
from compressor.steps.pruning_history import replay
from compressor.utils.io import atomic_write_json

if TYPE_CHECKING:
    import torch

    from compressor.context import RunContext
    from compressor.steps.base import Step


def chain_structure(steps: list[Step]) -> list[dict[str, Any]]:
    """The architecture edits of ``steps`` (after they ran), in order."""
    return [s.structure for s in steps if s.structure is not None]


def result_files(folder: Path, stem: str) -> tuple[Path, Path]:
    return folder / f"{stem}.safetensors", folder / f"{stem}.structure.json"


def save_result(model: torch.nn.Module, structure: list[dict[str, Any]], folder: Path, stem: str) -> list[Path]:
    """Write the chain's result (weights, then the edits); returns both paths."""
    weights, edits = result_files(folder, stem)
    save_weights(model, weights)
    atomic_write_json(edits, {"version": 1, "edits": structure})
    return [weights, edits]


def rebuild(model: torch.nn.Module, folder: Path, stem: str, ctx: RunContext) -> torch.nn.Module:
    """The chain's result: ``model`` (a fresh factory-built one; it is modified) with the
    saved edits replayed and the saved weights loaded."""
    weights, edits = result_files(folder, stem)
    record = json.loads(edits.read_text())
    for edit in record.get("edits", []):
        op = edit.get("op")
        if op == "prune":
            replay(model, edit)
        elif op == "student":
            from compressor.recipe.steps.distill import ModuleSource
            from compressor.steps.distill.step import build_module

            model = build_module(ModuleSource.model_validate(edit["student"]), ctx)
        else:
            raise StepError(f"{edits.name}: unknown architecture edit {op!r}", hint="run without --resume")
    load_weights(model, weights)
    return model.eval()
