"""Resource checks that run before any work: model size, evaluation set size, memory.

The estimates are deliberately simple and stated in the error: a run holds the torch
model, its exported ONNX copies and runtime sessions (about ``MODEL_COPIES`` times the
weights), and the evaluation inputs plus their fitted copy and reference outputs
(about ``EVAL_COPIES`` times the input bytes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from compressor.errors import DataError, ModelLoadError, RecipeError
from compressor.recipe.schema import Recipe

MODEL_COPIES = 6
EVAL_COPIES = 3
FLOAT_BYTES = 4


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def model_bytes(recipe: Recipe) -> int:
    """Bytes of the model files the recipe names (weights, or ONNX + its folder's external data)."""
    m = recipe.model
    if m.weights:
        p = Path(m.weights)
        return p.stat().st_size if p.is_file() else 0
    if m.onnx:
        p = Path(m.onnx)
        if not p.is_file():
            return 0
        total = p.stat().st_size
        try:
            from compressor.models.onnx_input import external_data_locations

            import onnx

            proto = onnx.load(str(p), load_external_data=False)
            for loc in set(external_data_locations(proto)):
                f = p.parent / loc
                total += f.stat().st_size if f.is_file() else 0
        except Exception:  # noqa: BLE001 - unreadable models are reported by the loader, with a better message
            pass
        return total
    return 0


def estimated_eval_bytes(recipe: Recipe) -> int | None:
    """Evaluation input bytes when the recipe fixes both the sample count and the input shape."""
    split = recipe.data.evaluation
    shapes = ([i.shape for i in recipe.model.inputs] if recipe.model.inputs
              else [recipe.model.input_shape] if recipe.model.input_shape else None)
    if split.samples is None or not shapes:
        return None
    return split.samples * sum(math.prod(s[1:]) for s in shapes) * FLOAT_BYTES


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check_limits(recipe: Recipe, eval_bytes: int | None = None) -> dict[str, int | None]:
    """Raise before work starts when the model or data break the recipe's ``limits:`` or
    the run would not fit in memory. ``eval_bytes``: the loaded set's real size, when known."""
    lim = recipe.limits
    mbytes = model_bytes(recipe)
    ebytes = eval_bytes if eval_bytes is not None else estimated_eval_bytes(recipe)
    if lim.max_model_bytes is not None and mbytes > lim.max_model_bytes:
        raise ModelLoadError(f"the model is {_fmt(mbytes)}, over limits.max_model_bytes ({_fmt(lim.max_model_bytes)})",
                             hint="use a smaller model or raise limits.max_model_bytes")
    if lim.max_eval_bytes is not None and ebytes is not None and ebytes > lim.max_eval_bytes:
        raise DataError(f"the evaluation set is {_fmt(ebytes)}, over limits.max_eval_bytes ({_fmt(lim.max_eval_bytes)})",
                        hint="set data.evaluation.samples lower or raise limits.max_eval_bytes")
    available = available_memory_bytes()
    need = MODEL_COPIES * mbytes + EVAL_COPIES * (ebytes or 0)
    if lim.check_memory and available is not None and need > available:
        raise RecipeError(
            f"this run needs about {_fmt(need)} of memory ({MODEL_COPIES} x model {_fmt(mbytes)} + {EVAL_COPIES} x "
            f"evaluation set {_fmt(ebytes or 0)}) but only {_fmt(available)} is available",
            hint="evaluate on fewer samples (data.evaluation.samples), free memory, or set limits.check_memory: false",
        )
    return {"model_bytes": mbytes, "eval_bytes": ebytes, "available_bytes": available}
