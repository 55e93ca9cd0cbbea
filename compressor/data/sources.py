"""Built-in and user-supplied data sources, all numpy-only."""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from compressor.data.dataset import Dataset
from compressor.errors import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
BUILTIN_SOURCES = ("fashion-mnist", "digits")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def fashion_mnist_dir() -> Path:
    return Path(os.environ.get("COMPRESSOR_FASHION_MNIST", FASHION_MNIST_DIR))


def load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw Fashion-MNIST: uint8 images ``[N, 28, 28]`` and int64 labels ``[N]``."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise DataError(f"fashion-mnist has splits 'train' and 'test', not {split!r}")
    root = fashion_mnist_dir()
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise DataError(
            f"Fashion-MNIST not found in {root}",
            hint="install it with `apt-get install dataset-fashion-mnist` (run `make setup` as root), "
            "or point COMPRESSOR_FASHION_MNIST at a folder with the idx .gz files",
        )
    x = _read_idx(images, 16).reshape(-1, 28, 28)
    y = _read_idx(labels, 8).astype(np.int64)
    return x, y


def _fashion(split: str) -> Dataset:
    x, y = load_fashion_mnist(split)
    return Dataset({"input": (x.astype(np.float32) / 255.0)[:, None]}, y, f"fashion-mnist/{split}",
                   {"classes": FASHION_MNIST_CLASSES})


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits, read from the CSV it ships. Reading the file directly
    keeps this path free of sklearn's own imports (which may import torch)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'digits' data source needs scikit-learn installed", hint="pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    try:
        raw = np.loadtxt(path, delimiter=",", dtype=np.float32)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read scikit-learn's digits data at {path}: {e}") from None
    return raw[:, :-1].reshape(-1, 8, 8), raw[:, -1].astype(np.int64)


def _digits(split: str) -> Dataset:
    images, target = _digits_arrays()
    x = (images / 16.0)[:, None]
    y = target
    # fixed, seeded 80/20 split so train and test never overlap
    idx = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    if split not in ("train", "test"):
        raise DataError(f"digits has splits 'train' and 'test', not {split!r}")
    sel = np.sort(idx[:cut] if split == "train" else idx[cut:])
    return Dataset({"input": x[sel]}, y[sel], f"digits/{split}")


def _npz(path: str | Path, split: str, base_dir: Path | None) -> Dataset:
    path = Path(path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    try:
        # allow_pickle=False: an .npz with object arrays could run code when unpickled
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        raise DataError(f"{path}: {e}", hint="save plain numeric arrays (object arrays are refused)") from None
    except Exception as e:  # zipfile.BadZipFile, OSError, ...
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    suffix = f"_{split}"
    split_keys = {k[: -len(suffix)]: v for k, v in arrays.items() if k.endswith(suffix)}
    if split_keys:
        arrays = split_keys
    labels = arrays.pop("y", None)
    if "x" in arrays:
        inputs = {"input": arrays.pop("x")}
    else:
        inputs = arrays
    if not inputs:
        raise DataError(f"{path} has no input arrays", hint="store inputs as 'x' (or one array per model input) and labels as 'y'")
    return Dataset(inputs, labels, f"{path.name}/{split}")


def _factory(spec: str, split: str, base_dir: Path | None, kwargs: dict[str, Any]) -> Dataset:
    from compressor.models.factory import import_callable
    from compressor.recipe.paths import anchor_factory

    fn = import_callable(anchor_factory(spec, base_dir))
    out = fn(split=split, **kwargs)
    if isinstance(out, Dataset):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        x, y = out
        inputs = x if isinstance(x, dict) else {"input": np.asarray(x)}
        return Dataset({k: np.asarray(v) for k, v in inputs.items()}, None if y is None else np.asarray(y), f"{spec}/{split}")
    raise DataError(f"data factory {spec} must return a compressor.data.Dataset or an (x, y) tuple, got {type(out).__name__}")


def load_split(
    source: str | dict[str, Any],
    split: str,
    samples: int | None = None,
    *,
    seed: int | None = None,
    base_dir: Path | None = None,
) -> Dataset:
    """Load one split of a data source, optionally limited to ``samples`` items.

    >>> ds = load_split("digits", "test", samples=8)   # doctest: +SKIP
    """
    if isinstance(source, str):
        if source == "fashion-mnist":
            ds = _fashion(split)
        elif source == "digits":
            ds = _digits(split)
        else:
            raise DataError(f"unknown data source {source!r}; built-in sources: {', '.join(BUILTIN_SOURCES)}",
                            hint="or use {npz: file.npz} / {imagefolder: dir} / {factory: file.py:fn}")
    elif "npz" in source:
        ds = _npz(source["npz"], split, base_dir)
    elif "factory" in source:
        ds = _factory(source["factory"], split, base_dir, dict(source.get("kwargs") or {}))
    elif "imagefolder" in source:
        from compressor.data.imagefolder import load_imagefolder

        ds = load_imagefolder(source["imagefolder"], split, base_dir)
    else:
        raise DataError(f"unknown data source {source!r}")
    if len(ds) == 0:
        raise DataError(f"data split {split!r} of {ds.name} is empty")
    return ds.subset(samples, seed)
