"""Per-block offsets next to ``MatMulNBits``: ``x @ W = MatMulNBits(x) + blocksum(x) @ M``.

``MatMulNBits`` runs its fast (packed, int8-activation) kernels only with integer zero
points. A weight on a grid with a float offset per block (GGUF Q4_1's ``w = d*q + m``,
HQQ's ``w = s*(q - z)`` with a float ``z``) is written as integer codes and zero points
plus the remainder ``M`` [blocks, N] of each block: ``blocksum(x)`` ([.., K] -> [.., blocks],
a MatMul with a 0/1 matrix) sums each block of the input, once per input (q/k/v and
gate/up share theirs), and ``blocksum(x) @ M`` adds the offsets back exactly.

    >>> sums = BlockSums()
    >>> nodes, inits = [], []
    >>> sums.add(nodes, inits, "x", k=64, block=32, offset=np.zeros((2, 8), np.float32), main="y.main", out="y",
    ...          prefix="p")
    >>> [n.op_type for n in nodes]
    ['MatMul', 'MatMul', 'Add']
"""

from __future__ import annotations

from typing import Any

import numpy as np


def block_sum_matrix(k: int, block: int) -> np.ndarray:
    """The [K, ceil(K/block)] 0/1 matrix whose column j sums inputs j*block .. (j+1)*block - 1
    (a last, partial block sums what there is: MatMulNBits pads it with zeros)."""
    g = -(-k // block)
    ones = np.zeros((k, g), np.float32)
    ones[np.arange(k), np.arange(k) // block] = 1.0
    return ones


class BlockSums:
    """Adds offset terms to a graph being rebuilt, sharing each input's block sums."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, int], str] = {}  # (input, block) -> its block sums
        self.summers: dict[tuple[int, int], str] = {}  # (K, block) -> the 0/1 initializer

    def add(self, nodes: list[Any], inits: list[Any], x: str, *, k: int, block: int, offset: np.ndarray, main: str,
            out: str, prefix: str) -> None:
        """Append ``out = main + blocksum(x) @ offset`` (``offset`` [ceil(K/block), N])."""
        from onnx import helper, numpy_helper

        sums = self.sums.get((x, block))
        if sums is None:
            if (k, block) not in self.summers:
                self.summers[(k, block)] = f"blocksum.{k}.{block}"
                inits.append(numpy_helper.from_array(block_sum_matrix(k, block), self.summers[(k, block)]))
            sums = self.sums[(x, block)] = f"{prefix}.sums"
            nodes.append(helper.make_node("MatMul", [x, self.summers[(k, block)]], [sums], name=sums))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(offset, np.float32), f"{prefix}.offset"))
        nodes += [helper.make_node("MatMul", [sums, f"{prefix}.offset"], [f"{prefix}.off"], name=f"{prefix}.off"),
                  helper.make_node("Add", [main, f"{prefix}.off"], [out], name=f"{prefix}.add")]
