"""Seeding every random number generator a run touches (recipe ``seed:``)."""

from __future__ import annotations

import random
import sys


def seed_everything(seed: int, *, torch_too: bool = True) -> None:
    """Seed Python, NumPy and torch, so a run is repeatable on one machine.

    ``torch_too=False`` seeds torch only when something already imported it (ONNX-only
    runs then do not pay for importing torch).
    """
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is None and torch_too:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    if torch is not None:
        torch.manual_seed(seed)
