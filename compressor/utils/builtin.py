"""Where the built-in targets, recipes and examples live.

The repository's top-level ``targets/``, ``recipes/`` and ``examples/`` folders are the
source. Building a wheel copies them into the package as ``compressor/builtin/<kind>/``
(setup.py), so an installed package finds them without a checkout; a source checkout
(and an editable install) reads the top-level folders directly.

>>> (builtin_dir("targets") / "onnxruntime-cpu.yaml").is_file()
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Kind = Literal["targets", "recipes", "examples"]
PACKAGED = Path(__file__).resolve().parents[1] / "builtin"   # inside an installed wheel
CHECKOUT = Path(__file__).resolve().parents[2]               # the repository root


def builtin_dir(kind: Kind) -> Path:
    """The folder of built-in ``kind`` files: the packaged copy when there is one, else the checkout's."""
    packaged = PACKAGED / kind
    return packaged if packaged.is_dir() else CHECKOUT / kind
