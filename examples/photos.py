"""Data factory of real photo crops for ImageNet-weight models (no ImageNet labels
offline): varied crops of scikit-learn's two sample photos from
``examples/mobilenet_v2.py:sample_images``, unlabelled, so recipes measure agreement
with the FP32 model (``metric: top1_agreement`` or ``cosine``).

The "train" split (calibration), the "test" split (evaluation) and the "val" split
(for accuracy-aware tuning: ``accuracy_criterion.tuning_data: train`` with
``data.train: {split: val}``) are drawn with different seeds, so INT8 is never
evaluated on the crops it was calibrated or tuned on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SEEDS = {"train": 1, "test": 2, "val": 3}


NORMALISATIONS = ("imagenet", "tf")


def photo_crops(split: str = "test", n: int = 200, normalise: str = "imagenet"):
    """``{"input": float32 [n, 3, 224, 224]}`` crops, no labels; ``normalise``: "imagenet"
    (mean/std, torchvision's models) or "tf" ((x*255-127)/128, the TF Lite checkpoints such as
    examples/efficientnet_lite0.py). The same crops either way."""
    from compressor.data import Dataset
    from compressor.errors import DataError

    if split not in SEEDS:
        raise DataError(f"photo crops have splits {', '.join(map(repr, SEEDS))}, not {split!r}")
    if normalise not in NORMALISATIONS:
        raise DataError(f"photo crops normalise as {' or '.join(NORMALISATIONS)}, not {normalise!r}")
    if normalise == "tf":
        from efficientnet_lite0 import sample_images
    else:
        from mobilenet_v2 import sample_images

    return Dataset({"input": sample_images(n, seed=SEEDS[split])}, None, f"photo-crops/{split}")
