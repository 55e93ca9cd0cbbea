"""Mixed INT4/INT8 for HQQ (``algorithm: hqq`` with ``ratio < 1``): the layers HQQ fits worst
stay INT8.

HQQ needs no data, and neither does this choice: each weight MatMul is quantized with HQQ's
solver, its relative reconstruction error ``||W - deq(q(W))||^2 / ||W||^2`` is measured, and
the worst layers go to INT8 until at most ``ratio`` of the weights (by parameter count, the
INT8 head excluded, as NNCF counts ``ratio``) remain INT4. A layer whose weights sit on a
finer grid than 4 bits (a GGUF Q4_K_M keeps some layers at Q6_K) or have outliers that a
4-bit group cannot hold scores high and is kept at INT8. Both runtimes use the same rule, so
an ONNX Runtime and an OpenVINO model of one recipe keep the same layers at INT8.

    >>> rng = np.random.default_rng(0)
    >>> grid = (rng.integers(0, 16, size=(8, 64)) - 8) * 0.1      # already on a 4-bit grid
    >>> fine = rng.normal(size=(8, 64))                             # not
    >>> keep, errors = int8_by_hqq_error({"grid": grid, "fine": fine}, group_size=32, ratio=0.5)
    >>> keep
    ['fine']
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def hqq_relative_error(weight_nk: np.ndarray, group_size: int) -> float:
    """HQQ's 4-bit relative squared reconstruction error of one weight ``[N, K]``."""
    from compressor.steps.weight_only.hqq_openvino import hqq_codes

    w = np.asarray(weight_nk, np.float32)
    n, k = w.shape
    pad = -k % group_size
    wp = np.pad(w, ((0, 0), (0, pad))) if pad else w
    codes, scale, zero = hqq_codes(wp, group_size)
    g = wp.shape[1] // group_size
    deq = ((codes.reshape(n, g, group_size).astype(np.float32) - zero[..., None]) * scale[..., None]).reshape(n, -1)
    err = float(((deq[:, :k] - w) ** 2).sum())
    return err / max(float((w ** 2).sum()), 1e-30)


def int8_by_hqq_error(weights: Mapping[str, np.ndarray], group_size: int,
                      ratio: float) -> tuple[list[str], dict[str, float]]:
    """The layers (names of ``weights``, each ``[N, K]``) to keep at INT8 so that at most
    ``ratio`` of the parameters stay INT4, worst HQQ error first; and every layer's error."""
    errors = {name: round(hqq_relative_error(w, group_size), 6) for name, w in weights.items()}
    sizes = {name: int(np.asarray(w).size) for name, w in weights.items()}
    total = sum(sizes.values())
    budget = (1.0 - ratio) * total  # parameters that may go to INT8
    keep: list[str] = []
    moved = 0
    for name in sorted(errors, key=lambda n: -errors[n]):
        if moved + sizes[name] > budget + 1e-9:
            continue  # a smaller, better-fitting layer may still fit the budget
        keep.append(name)
        moved += sizes[name]
    return keep, errors
