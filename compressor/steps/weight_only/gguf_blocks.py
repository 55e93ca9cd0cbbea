"""The block grids of a GGUF file (Q4_0, Q4_1, Q8_0) as integer codes + per-block scales,
and which weight of an exported decoder each one is, found by value.

A GGUF matrix of shape (rows N, columns K) stores rows of K weights in blocks of 32, one
fp16 scale ``d`` per block (Q4_1 also an fp16 offset ``m``):

- Q4_0: ``w = d * (q - 8)``, q in 0..15
- Q4_1: ``w = d * q + m``, q in 0..15
- Q8_0: ``w = d * q``, q in -128..127 (stored here as q + 128 with zero point 128)

That is the layout of ONNX Runtime's ``MatMulNBits`` (B as [N, K/32, ...], blocks along K)
and of OpenVINO's compressed MatMul weights, so the codes move over without re-rounding.

Weights are matched by value, not by name: an exported decoder's MatMul weight W [K, N]
is a GGUF tensor when ``W.T`` equals that tensor's dequantized rows, possibly in another
row order (llama.cpp's converter permutes the rows of Llama's q/k projections, which
transformers' reader undoes). Any export naming works.

    >>> grids = read_grids(Path("SmolLM2-135M-Instruct.Q4_1.gguf"))    # doctest: +SKIP
    >>> match_weights({"lm_head": w}, grids)["lm_head"].grid.kind       # doctest: +SKIP
    'Q8_0'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compressor.errors import ModelLoadError

BLOCK = 32
KINDS = ("Q4_0", "Q4_1", "Q8_0")  # the grids kept exactly


@dataclass
class BlockGrid:
    """One GGUF tensor on a block grid: ``dequantize() == scale * (codes - zero) + offset``."""

    name: str
    kind: str  # Q4_0 / Q4_1 / Q8_0
    codes: np.ndarray  # uint8 [N, K]
    scale: np.ndarray  # float32 [N, K / 32] (fp16 values)
    zero: int  # 8, 0 or 128
    offset: np.ndarray | None  # float32 [N, K / 32] (Q4_1's m) or None

    @property
    def bits(self) -> int:
        return 8 if self.kind == "Q8_0" else 4

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape  # type: ignore[return-value]

    def dequantize(self) -> np.ndarray:
        """float32 [N, K], the same float operations as gguf's own dequantization."""
        n, k = self.shape
        q = self.codes.reshape(n, k // BLOCK, BLOCK).astype(np.float32) - np.float32(self.zero)
        w = self.scale[..., None] * q
        if self.offset is not None:
            w = w + self.offset[..., None]
        return w.reshape(n, k)

    def take_rows(self, rows: np.ndarray) -> BlockGrid:
        off = None if self.offset is None else self.offset[rows]
        return BlockGrid(self.name, self.kind, self.codes[rows], self.scale[rows], self.zero, off)


def _parse(kind: str, raw: np.ndarray, n: int, k: int) -> BlockGrid:
    """Split raw GGUF bytes [N, bytes per row] into codes and scales."""
    g = k // BLOCK
    blocks = raw.reshape(n, g, -1)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q8_0":
        q = blocks[..., 2:].copy().view(np.int8).astype(np.int16) + 128
        return BlockGrid("", kind, q.astype(np.uint8).reshape(n, k), d, 128, None)
    start = 4 if kind == "Q4_1" else 2
    packed = blocks[..., start:start + BLOCK // 2]
    # byte j holds element j (low nibble) and element j + 16 (high nibble)
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).reshape(n, k)
    if kind == "Q4_1":
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        return BlockGrid("", kind, q, d, 0, m)
    return BlockGrid("", kind, q, d, 8, None)


def read_grids(path: Path) -> tuple[list[BlockGrid], dict[str, str]]:
    """The 2-D tensors of ``path`` on a kept grid, and every other tensor's type by name."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise ModelLoadError("reading GGUF blocks needs the package gguf", hint="pip install gguf") from e
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - the reader raises many types on a bad file
        raise ModelLoadError(f"cannot read GGUF file {path}: {str(e).strip().splitlines()[0]}") from None
    grids, others = [], {}
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in KINDS and len(t.shape) == 2:
            k, n = (int(x) for x in t.shape)  # GGUF lists the contiguous dimension first
            grid = _parse(kind, np.asarray(t.data), n, k)
            grid.name = t.name
            grids.append(grid)
        elif len(t.shape) == 2:
            others[t.name] = kind
    return grids, others


@dataclass
class Match:
    """An exported weight found on a GGUF grid; ``grid`` rows are in the weight's column order."""

    grid: BlockGrid
    permuted: bool


def _row_key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()


def match_weights(weights: dict[str, np.ndarray], grids: list[BlockGrid]) -> dict[str, Match]:
    """Which of ``weights`` (name -> float32 [K, N], as MatMul's second input) are GGUF grids,
    exactly (every value equal, rows possibly reordered). Unmatched names are left out."""
    by_shape: dict[tuple[int, int], list[BlockGrid]] = {}
    for g in grids:
        by_shape.setdefault(g.shape, []).append(g)
    index: dict[bytes, tuple[int, int]] = {}  # first-row hash -> (grid id, row); built lazily per shape
    deq: dict[int, np.ndarray] = {}
    done_shapes: set[tuple[int, int]] = set()
    found: dict[str, Match] = {}
    for name, w in weights.items():
        if w.ndim != 2 or w.dtype != np.float32:
            continue
        wt = np.ascontiguousarray(w.T)
        shape = wt.shape
        if shape not in by_shape:
            continue
        if shape not in done_shapes:
            for g in by_shape[shape]:
                deq[id(g)] = d = g.dequantize()
                for r in range(d.shape[0]):
                    index.setdefault(_row_key(d[r]), (id(g), r))
            done_shapes.add(shape)
        hit = index.get(_row_key(wt[0]))
        if hit is None:
            continue
        grid = next(g for g in by_shape[shape] if id(g) == hit[0])
        d = deq[id(grid)]
        if np.array_equal(d, wt):
            found[name] = Match(grid, False)
            continue
        rows = [index.get(_row_key(wt[r]), (None, -1)) for r in range(shape[0])]
        perm = np.array([r for gid, r in rows if gid == id(grid)])
        if len(perm) == shape[0] and np.array_equal(d[perm], wt):
            found[name] = Match(grid.take_rows(perm), True)
    return found
