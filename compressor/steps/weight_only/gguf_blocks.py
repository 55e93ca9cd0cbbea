"""The block grids of a GGUF file (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q4_K,
Q6_K) as integer codes + per-block scales, and which weight of an exported decoder each one
is, found by value.

A GGUF matrix of shape (rows N, columns K) stores rows of K weights in blocks of 32, one
fp16 scale ``d`` per block (Q4_1 and Q5_1 also an fp16 offset ``m``):

- Q4_0: ``w = d * (q - 8)``, q in 0..15
- Q4_1: ``w = d * q + m``, q in 0..15
- Q5_0: ``w = d * (q - 16)``, q in 0..31 (5 bits: kept in 8-bit codes)
- Q5_1: ``w = d * q + m``, q in 0..31 (8-bit codes)
- Q8_0: ``w = d * q``, q in -128..127 (stored here as q + 128 with zero point 128)

The K-quants group 256 weights in a super-block with an fp16 ``d`` (Q4_K also ``dmin``) and
6/8-bit sub-block factors; their products are per-sub-block float32 scales, so they are block
grids too:

- Q4_K: sub-blocks of 32, ``w = (d * sc) * q - (dmin * m)``, q in 0..15 (an offset grid like Q4_1)
- Q6_K: sub-blocks of 16, ``w = (d * sc) * (q - 32)``, q in 0..63 (8-bit codes, blocks of 16)

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

BLOCK = 32  # the legacy types' block; Q6_K's sub-blocks are 16 (BlockGrid.block)
KINDS = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K")  # the grids kept exactly
FOUR_BIT = ("Q4_0", "Q4_1", "Q4_K")  # the rest go to 8-bit codes (5/6 bits widened, no rounding)
QK_K = 256


@dataclass
class BlockGrid:
    """One GGUF tensor on a block grid: ``dequantize() == scale * (codes - zero) + offset``."""

    name: str
    kind: str  # one of KINDS
    codes: np.ndarray  # uint8 [N, K]
    scale: np.ndarray  # float32 [N, K / block]
    zero: int  # 8, 0, 16, 32 or 128
    offset: np.ndarray | None  # float32 [N, K / block] (Q4_1/Q5_1's m, Q4_K's -dmin*m) or None
    block: int = BLOCK

    @property
    def bits(self) -> int:
        return 4 if self.kind in FOUR_BIT else 8

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape  # type: ignore[return-value]

    def dequantize(self) -> np.ndarray:
        """float32 [N, K], the same float operations as gguf's own dequantization."""
        n, k = self.shape
        q = self.codes.reshape(n, k // self.block, self.block).astype(np.float32) - np.float32(self.zero)
        w = self.scale[..., None] * q
        if self.offset is not None:
            w = w + self.offset[..., None]
        return w.reshape(n, k)


def _f16(b: np.ndarray) -> np.ndarray:
    """[..., 2] bytes -> float32 [...] (an fp16 field of every block)."""
    return b.copy().view(np.float16)[..., 0].astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """[..., m] bytes -> [..., 2m]: the low nibbles, then the high ones (GGUF's order)."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=-1)


def _parse_k(kind: str, raw: np.ndarray, n: int, k: int) -> BlockGrid:
    """Q4_K / Q6_K super-blocks [N, K / 256, bytes] -> per-sub-block codes and float32 scales
    (the products gguf's own dequantization computes first, so values match bit for bit)."""
    sb = raw.reshape(n, k // QK_K, -1)
    if kind == "Q4_K":
        d, dmin = _f16(sb[..., 0:2]), _f16(sb[..., 2:4])
        sc6 = sb[..., 4:16].reshape(n, -1, 3, 4)
        lo, mid, hi = sc6[..., 0, :], sc6[..., 1, :], sc6[..., 2, :]
        sc = np.concatenate([lo & 0x3F, (hi & 0x0F) | ((lo >> 2) & 0x30)], axis=-1)  # [N, S, 8]
        mn = np.concatenate([mid & 0x3F, (hi >> 4) | ((mid >> 2) & 0x30)], axis=-1)
        qs = sb[..., 16:].reshape(n, -1, 4, 32)  # 4 chunks of 32 bytes: 64 weights each
        q = _nibbles(qs).reshape(n, k)
        scale = (d[..., None] * sc.astype(np.float32)).reshape(n, -1)
        offset = -(dmin[..., None] * mn.astype(np.float32)).reshape(n, -1)
        return BlockGrid("", kind, q.astype(np.uint8), scale, 0, offset, 32)
    # Q6_K: ql [128], qh [64], scales int8 [16], d fp16
    ql, qh = sb[..., :128].reshape(n, -1, 2, 64), sb[..., 128:192].reshape(n, -1, 2, 32)
    scales = sb[..., 192:208].copy().view(np.int8).astype(np.float32)
    d = _f16(sb[..., 208:210])
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=-1).reshape(n, -1, 2, 4, 32)  # [.., half, 4 quarters, 32]
    high = np.stack([(qh >> s) & 0x03 for s in (0, 2, 4, 6)], axis=-2)  # [.., half, 4, 32]
    q = (low | (high << 4)).reshape(n, k)
    scale = (d[..., None] * scales).reshape(n, -1)
    return BlockGrid("", kind, q.astype(np.uint8), scale, 32, None, 16)


def _parse(kind: str, raw: np.ndarray, n: int, k: int) -> BlockGrid:
    """Split raw GGUF bytes [N, bytes per row] into codes and scales."""
    if kind in ("Q4_K", "Q6_K"):
        return _parse_k(kind, raw, n, k)
    g = k // BLOCK
    blocks = raw.reshape(n, g, -1)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q8_0":
        q = blocks[..., 2:].copy().view(np.int8).astype(np.int16) + 128
        return BlockGrid("", kind, q.astype(np.uint8).reshape(n, k), d, 128, None)
    if kind in ("Q5_0", "Q5_1"):
        start = 4 if kind == "Q5_1" else 2
        qh = blocks[..., start:start + 4].copy().view(np.uint32)  # [N, G, 1]: bit j = element j's 5th bit
        high = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)  # [N, G, 32]
        q = (_nibbles(blocks[..., start + 4:start + 4 + BLOCK // 2]) | (high << 4)).reshape(n, k)
        if kind == "Q5_1":
            return BlockGrid("", kind, q, d, 0, _f16(blocks[..., 2:4]))
        return BlockGrid("", kind, q, d, 16, None)
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
    """An exported weight found on GGUF grids; ``grid`` rows are in the weight's column order
    (one tensor's rows, reordered or not, or the rows of several same-type tensors
    concatenated: a packed q/k/v projection)."""

    grid: BlockGrid
    permuted: bool  # rows reordered, or gathered from several tensors (named 'a + b + c')


def _row_key(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()


def _gather_rows(grids: list[BlockGrid], hits: list[tuple[int, int]]) -> BlockGrid | None:
    """One grid holding ``grids[g].rows[r]`` for each (g, r) of ``hits``, in that order; None
    when the tensors differ in type (one MatMulNBits holds one kind of block)."""
    used = sorted({g for g, _ in hits})
    kinds = {(grids[g].kind, grids[g].block, grids[g].zero, grids[g].offset is None) for g in used}
    if len(kinds) != 1:
        return None
    first = grids[used[0]]
    gi = np.array([g for g, _ in hits])
    ri = np.array([r for _, r in hits])
    codes = np.empty((len(hits), first.shape[1]), np.uint8)
    scale = np.empty((len(hits), first.scale.shape[1]), np.float32)
    offset = None if first.offset is None else np.empty_like(scale)
    for g in used:
        sel = gi == g
        codes[sel], scale[sel] = grids[g].codes[ri[sel]], grids[g].scale[ri[sel]]
        if offset is not None:
            offset[sel] = grids[g].offset[ri[sel]]  # type: ignore[index]
    name = " + ".join(grids[g].name for g in dict.fromkeys(gi.tolist()))
    return BlockGrid(name, first.kind, codes, scale, first.zero, offset, first.block)


def match_weights(weights: dict[str, np.ndarray], grids: list[BlockGrid]) -> dict[str, Match]:
    """Which of ``weights`` (name -> float32 [K, N], as MatMul's second input) are GGUF grids,
    exactly (every value equal). A weight may be one tensor's rows in any order or the rows of
    several tensors of one type side by side (a builder's packed q/k/v MatMul). Unmatched
    names are left out."""
    by_k: dict[int, list[int]] = {}
    for i, g in enumerate(grids):
        by_k.setdefault(g.shape[1], []).append(i)
    index: dict[bytes, tuple[int, int]] = {}  # row hash -> (grid index, row); built lazily per K
    deq: dict[int, np.ndarray] = {}
    indexed: set[int] = set()
    found: dict[str, Match] = {}
    for name, w in weights.items():
        if w.ndim != 2 or w.dtype != np.float32 or w.shape[0] not in by_k:
            continue
        wt = np.ascontiguousarray(w.T)
        for i in by_k[w.shape[0]] if w.shape[0] not in indexed else []:  # first weight with this K
            deq[i] = d = grids[i].dequantize()
            for r in range(d.shape[0]):
                index.setdefault(_row_key(d[r]), (i, r))
        indexed.add(w.shape[0])
        hit = index.get(_row_key(wt[0]))
        if hit is None:
            continue
        if deq[hit[0]].shape == wt.shape and np.array_equal(deq[hit[0]], wt):
            found[name] = Match(grids[hit[0]], False)
            continue
        hits = [index.get(_row_key(wt[r])) for r in range(wt.shape[0])]
        if any(h is None for h in hits):
            continue
        grid = _gather_rows(grids, hits)  # type: ignore[arg-type]
        if grid is not None and np.array_equal(grid.dequantize(), wt):
            found[name] = Match(grid, True)
    return found
