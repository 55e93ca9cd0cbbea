"""Build the user's torch model from a recipe's ``model:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ModelLoadError
from compressor.models.factory import import_callable
from compressor.models.weights import apply_state_dict, load_state_dict
from compressor.recipe.schema import ModelSpec


def input_specs(spec: ModelSpec) -> list[dict[str, Any]]:
    """Named inputs with example shapes: ``[{"name", "shape", "dtype", "dynamic"}]``."""
    if spec.inputs:
        return [i.model_dump() for i in spec.inputs]
    assert spec.input_shape is not None
    return [{"name": "input", "shape": list(spec.input_shape), "dtype": "float32", "dynamic": {}}]


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


def load_torch_model(spec: ModelSpec) -> Any:
    """Call the factory, load the weights strictly and safely, return the model in eval mode.
    ``spec``'s paths as they stand (a run anchors them: :mod:`compressor.recipe.paths`)."""
    import torch

    assert spec.factory is not None
    fn = import_callable(spec.factory)
    try:
        model = fn(**spec.factory_kwargs)
    except Exception as e:
        raise ModelLoadError(f"factory {spec.factory} raised {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"factory {spec.factory} returned {type(model).__name__}, not a torch.nn.Module")
    if spec.weights is not None:
        path = Path(spec.weights)
        apply_state_dict(model, load_state_dict(path), path)
    return model.eval()


def check_input_fits(model: Any, specs: list[dict[str, Any]]) -> None:
    """Run one example batch so a wrong input_shape fails here, with a clear message."""
    import torch

    feeds = example_inputs(specs)
    try:
        with torch.inference_mode():
            model(*[torch.from_numpy(np.ascontiguousarray(feeds[s["name"]])) for s in specs])
    except Exception as e:
        shapes = ", ".join(f"{s['name']}={s['shape']}" for s in specs)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"the model does not accept the recipe's input shape ({shapes}): {first}",
            hint="set model.input_shape to the shape the model expects (batch first)",
        ) from None
