from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from compressor.errors import DataError


@dataclass
class Dataset:
    """Named input arrays sharing a first (sample) axis, plus optional labels.

    >>> ds = Dataset({"input": np.zeros((4, 1, 8, 8), np.float32)}, np.arange(4))
    >>> len(ds), ds.subset(2).labels.tolist()
    (4, [0, 1])
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    name: str = "data"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise DataError(f"dataset {self.name!r} has no input arrays")
        sizes = {k: len(v) for k, v in self.inputs.items()}
        if self.labels is not None:
            sizes["<labels>"] = len(self.labels)
        if len(set(sizes.values())) != 1:
            raise DataError(f"dataset {self.name!r}: arrays differ in length {sizes}")

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    def take(self, index: np.ndarray | slice) -> Dataset:
        return Dataset(
            {k: v[index] for k, v in self.inputs.items()},
            None if self.labels is None else self.labels[index],
            self.name,
            dict(self.meta),
        )

    def subset(self, n: int | None, seed: int | None = None) -> Dataset:
        """The first ``n`` samples, or ``n`` samples drawn with ``seed`` when given."""
        if n is None or n >= len(self):
            return self
        if seed is None:
            return self.take(slice(0, n))
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return self.take(idx)

    def batches(self, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        for start in range(0, len(self), batch_size):
            sl = slice(start, start + batch_size)
            yield (
                {k: v[sl] for k, v in self.inputs.items()},
                None if self.labels is None else self.labels[sl],
            )

    def first(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        return {k: v[:batch_size] for k, v in self.inputs.items()}

    def check_finite(self) -> None:
        for k, v in self.inputs.items():
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                bad = int((~np.isfinite(v)).reshape(len(v), -1).any(axis=1).sum())
                raise DataError(
                    f"dataset {self.name!r}: input {k!r} has NaN or infinite values in {bad} sample(s)",
                    hint="clean or drop those samples before calibrating",
                )


def fit_to_shape(ds: Dataset, input_shape: list[int] | tuple[int, ...] | None) -> Dataset:
    """Reshape a single-input dataset's samples to the model's example input shape.

    Fashion-MNIST is stored as ``[N, 1, 28, 28]``; an MLP that takes ``[1, 784]`` or
    an RNN that takes ``[1, 28, 28]`` gets the same pixels in its own layout.
    """
    if input_shape is None or len(ds.inputs) != 1:
        return ds
    name, x = next(iter(ds.inputs.items()))
    sample_shape = tuple(int(d) for d in input_shape[1:])
    if x.shape[1:] == sample_shape:
        return ds
    if int(np.prod(x.shape[1:])) != int(np.prod(sample_shape)):
        raise DataError(
            f"dataset {ds.name!r} samples have shape {list(x.shape[1:])}, which cannot be reshaped "
            f"to the model input shape {list(input_shape)}",
            hint="set model.input_shape to match the data (batch first)",
        )
    return Dataset({name: x.reshape((len(x), *sample_shape))}, ds.labels, ds.name, dict(ds.meta))
