"""FP32's own noise floor: how often the FP32 model agrees with itself when its input moves by
one least significant bit (LSB), and which samples keep their FP32 answer under that move.

An agreement figure (INT8 top-1 against FP32 top-1) on samples whose FP32 top-1 flips under
one grey level of input noise is partly noise: no INT8 model can be judged on them. The tuner
reports this floor beside every agreement figure and, by default, judges trials on the stable
samples only (``accuracy_criterion.agreement_on``); ``agreement_on: noise_floor`` instead counts a
trial's drop from this floor (the mean of 3 seeds) rather than from 100 %.

The LSB is the data's own quantum, per input channel (axis 1 of a 3-D or wider input, the
whole tensor otherwise): the smallest step between its distinct values when it takes at most
257 of them (8-bit images, normalized or not: 1/255 of the pixel range divided by the
channel's std), else 1/255 of the channel's range. Each float element gets uniform noise in
[-LSB, +LSB] (seeded); integer inputs (token ids, masks) are left alone.

>>> import numpy as np
>>> x = np.linspace(0, 1, 256, dtype=np.float32).reshape(1, 1, 16, 16)
>>> float(np.round(input_quantum(x)[0][0] * 255, 6))
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset

LEVELS = 257  # at most this many distinct values per channel: the data is quantized (8-bit or coarser)
_SCAN = 200_000  # values per channel examined for the quantum


def input_quantum(x: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-channel LSB of the float array ``x`` (shape [channels]; one value when ``x`` has
    fewer than 3 dimensions) and how it was found, in words."""
    chans = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1) if x.ndim >= 3 else x.reshape(1, -1)
    q, how = np.zeros(len(chans), np.float64), set()
    for c, values in enumerate(chans):
        u = np.unique(values[:_SCAN].astype(np.float64))
        if 1 < len(u) <= LEVELS:
            q[c] = float(np.min(np.diff(u)))
            how.add("the data's own quantum")
        elif len(u) > 1:
            q[c] = float(u[-1] - u[0]) / 255.0
            how.add("1/255 of the channel's range")
    return q, " / ".join(sorted(how)) or "constant input"


def perturb(data: Dataset, seed: int = 0) -> tuple[Dataset, str]:
    """``data`` with uniform noise of +-1 LSB on every float input; the perturbation in words."""
    rng = np.random.default_rng(seed)
    inputs, said = {}, []
    for name, x in data.inputs.items():
        if x.dtype.kind != "f":
            inputs[name] = x
            continue
        q, how = input_quantum(x)
        shape = [1] * x.ndim
        if x.ndim >= 3:
            shape[1] = len(q)
        amp = q.reshape(shape) if x.ndim >= 3 else q[0]
        inputs[name] = (x + rng.uniform(-1.0, 1.0, x.shape) * amp).astype(x.dtype)
        said.append(f"{name}: uniform +-1 LSB ({how}; LSB {float(np.min(q)):.3g}"
                    + (f"..{float(np.max(q)):.3g}" if np.max(q) > np.min(q) * 1.0001 else "") + ")")
    return Dataset(inputs, data.labels, data.name, dict(data.meta)), "; ".join(said) or "no float input to perturb"


@dataclass
class NoiseFloor:
    """FP32 against FP32 with +-1 LSB of input noise on the tuning data."""

    metric: str          # the reference metric measured (top1_agreement, cosine)
    value: float         # that metric of the perturbed FP32 outputs against the clean ones
    perturbation: str    # what was added, in words
    samples: int
    stable: np.ndarray | None  # per sample: FP32 top-1 unchanged (classification outputs only)

    def to_dict(self) -> dict[str, Any]:
        """As report.json's ``tuning.noise_floor`` records it."""
        d: dict[str, Any] = {"metric": self.metric, "value": round(self.value, 6), "perturbation": self.perturbation,
                             "samples": self.samples}
        if self.stable is not None:
            d["stable_samples"] = int(self.stable.sum())
        return d


def noise_floor(metric: str, reference: np.ndarray, perturbed: np.ndarray, perturbation: str) -> NoiseFloor:
    """The floor from the FP32 outputs on clean (``reference``) and perturbed inputs."""
    from compressor.metrics import compute_metric

    value = compute_metric(metric, perturbed, None, reference)
    flat_r, flat_p = reference.reshape(len(reference), -1), perturbed.reshape(len(perturbed), -1)
    stable = (flat_r.argmax(1) == flat_p.argmax(1)) if flat_r.shape[1] > 1 else None
    return NoiseFloor(metric, float(value), perturbation, len(reference), stable)


def mean_floor(floors: list[NoiseFloor]) -> NoiseFloor:
    """One floor from several seeds: the mean value, the first seed's stable samples (the
    judge of ``agreement_on: stable`` stays what it was)."""
    first = floors[0]
    if len(floors) == 1:
        return first
    value = float(np.mean([f.value for f in floors]))
    return NoiseFloor(first.metric, value, f"{first.perturbation}; mean of {len(floors)} seeds", first.samples,
                      first.stable)


def kl_to_reference(reference: np.ndarray, out: np.ndarray) -> float:
    """Mean KL divergence of the candidate's softmax from FP32's: every sample counts by how
    far its distribution moved, so low-margin samples do not dominate as they do top-1.

    >>> z = np.array([[2.0, 0.0], [0.0, 1.0]])
    >>> kl_to_reference(z, z)
    0.0
    """
    def log_softmax(a: np.ndarray) -> np.ndarray:
        a = a.reshape(len(a), -1).astype(np.float64)
        a = a - a.max(1, keepdims=True)
        return a - np.log(np.exp(a).sum(1, keepdims=True))

    lp, lq = log_softmax(reference), log_softmax(out)
    return max(0.0, float(np.mean(np.sum(np.exp(lp) * (lp - lq), 1))))
