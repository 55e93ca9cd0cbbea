"""Finding layers for pruning: ignore patterns, the classifier, and where a model breaks."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

from compressor.errors import RecipeError

WEIGHT_LAYERS = ("Conv1d", "Conv2d", "Conv3d", "Linear")


def is_weight_layer(m: Any) -> bool:
    from torch import nn

    return isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))


def resolve_ignored(model: Any, patterns: list[str], key: str = "prune.ignored_layers") -> list[Any]:
    """The modules matched by name globs (``layer3.*``) or type names (``Linear``,
    ``nn.Linear``). A pattern that matches nothing is a RecipeError naming it."""
    named = [(n, m) for n, m in model.named_modules() if n]
    found: list[Any] = []
    for pat in patterns:
        # "Linear", "nn.Linear", "torch.nn.Linear" name a type; anything else is a name glob
        is_type = pat.startswith(("nn.", "torch.nn.")) or (pat[:1].isupper() and pat.isidentifier())
        type_name = pat.rsplit(".", 1)[-1]
        hits = [m for n, m in named if (type(m).__name__ == type_name if is_type else fnmatchcase(n, pat))]
        if not hits:
            close = difflib.get_close_matches(pat, [n for n, _ in named], n=5, cutoff=0.4)
            raise RecipeError(
                f"{key}: pattern {pat!r} matches no layer of the model"
                + (f" (close names: {', '.join(close)})" if close else ""),
                hint="use module names as in model.named_modules() (globs allowed, e.g. 'layer3.*') or a type name such as 'Linear'",
            )
        found.extend(m for m in hits if all(m is not f for f in found))
    return found


def output_layer(model: Any, example: tuple[Any, ...]) -> tuple[str, Any] | None:
    """The last Conv/Linear layer to run in a forward pass: the classifier."""
    import torch

    order: list[tuple[str, Any]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: order.append((n, mod)))
               for n, m in model.named_modules() if is_weight_layer(m)]
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for h in handles:
            h.remove()
    return order[-1] if order else None


@contextlib.contextmanager
def last_module_tracker(model: Any) -> Iterator[list[str]]:
    """Record the name of the innermost module entered most recently, so an exception
    in a forward pass can name the layer it happened in."""
    trail: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, i, n=n: trail.append(n))
               for n, m in model.named_modules() if n and not list(m.children())]
    try:
        yield trail
    finally:
        for h in handles:
            h.remove()


def channel_counts(model: Any) -> dict[str, int]:
    """Output channels (Conv) / features (Linear) of every weight layer, by name."""
    out = {}
    for n, m in model.named_modules():
        if is_weight_layer(m):
            out[n] = int(m.weight.shape[0])
    return out


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
