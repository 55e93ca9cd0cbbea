"""Torch-Pruning's pruning history: how a structured prune changed a model, as data.

``DependencyGraph.pruning_history()`` lists every pruned group as ``[root module name,
out-channel pruning?, channel indices]``; ``load_pruning_history`` replays that list
on a model of the original architecture, which then has the pruned structure and
takes the pruned weights (safetensors) with a strict load. So a pruned model is
stored as JSON + safetensors, never pickled, and rebuilt from the factory without
re-running the pruning (or the training after it).

The record also keeps the example inputs' shapes and dtypes: replaying needs a
traced dependency graph, and tracing needs inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compressor.errors import StepError

if TYPE_CHECKING:
    import torch

FORMAT = "torch-pruning-history"
VERSION = 1


def _index(i: Any) -> int:
    # newer Torch-Pruning versions may wrap indices (``_HybridIndex(idx, root_idx)``)
    return int(getattr(i, "idx", i))


def history_record(history: list[Any], example: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """A JSON-able record of ``history`` (from ``pruner.pruning_history()``) and the inputs it was traced with."""
    return {
        "format": FORMAT, "version": VERSION,
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for t in example],
        "history": [[str(name), bool(out), [_index(i) for i in idxs]] for name, out, idxs in history],
    }


def replay(model: torch.nn.Module, record: dict[str, Any]) -> torch.nn.Module:
    """Prune ``model`` (the architecture the history was recorded on) the way ``record`` says, in place."""
    import torch
    import torch_pruning as tp

    if record.get("format") != FORMAT or record.get("version") != VERSION:
        raise StepError(f"not a pruning history this version can replay: format {record.get('format')!r}, "
                        f"version {record.get('version')!r}", hint="run without --resume to prune again")
    if not record["history"]:
        return model
    example = tuple(torch.zeros(x["shape"], dtype=getattr(torch, x["dtype"])) for x in record["inputs"])
    try:
        graph = tp.DependencyGraph().build_dependency(model.eval(), example)
        graph.load_pruning_history([list(h) for h in record["history"]])
    except (AttributeError, KeyError, IndexError, RuntimeError, ValueError) as e:
        raise StepError(f"the pruning history does not fit this model ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})",
                        hint="the factory or its arguments changed since the model was pruned; run without --resume") from None
    return model
