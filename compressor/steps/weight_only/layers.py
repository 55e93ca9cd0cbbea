"""Which weight layers of an exported decoder a weight-only step touches, by the module
names ``compressor.export.decoder`` gives its nodes (``inner.layers.<i>.<...>``, ``lm_head``)."""

from __future__ import annotations

from typing import Any

HEAD = "lm_head"


def weight_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes whose second input is a constant weight."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits]


def layer_index(name: str) -> int | None:
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def int8_layers(names: list[str], mixed: str, layers: int) -> list[str]:
    """The layers an INT4 model keeps at INT8: ``head`` the lm-head, ``edges`` also the
    first and last decoder layers (the most sensitive ones in published ablations)."""
    if mixed == "none":
        return []
    keep = [n for n in names if n == HEAD]
    if mixed == "edges":
        keep += [n for n in names if layer_index(n) in (0, layers - 1)]
    return keep
