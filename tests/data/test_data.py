from __future__ import annotations

import numpy as np
import pytest

from compressor.data import Dataset, fit_to_shape, load_split
from compressor.errors import DataError


def test_fashion_mnist_is_real():
    ds = load_split("fashion-mnist", "test")
    assert len(ds) == 10_000
    x = ds.inputs["input"]
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert sorted(np.unique(ds.labels)) == list(range(10))


def test_digits_splits_do_not_overlap():
    tr, te = load_split("digits", "train"), load_split("digits", "test")
    assert len(tr) + len(te) == 1797
    rows = {x.tobytes() for x in tr.inputs["input"]}
    overlap = sum(x.tobytes() in rows for x in te.inputs["input"])
    assert overlap < 5  # digits has a handful of exact duplicate images, nothing more


def test_samples_and_seeded_subsets():
    a = load_split("digits", "train", 100, seed=1)
    b = load_split("digits", "train", 100, seed=1)
    c = load_split("digits", "train", 100)
    assert len(a) == 100 and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.inputs["input"], c.inputs["input"])


def test_npz_per_split_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x_train=np.zeros((4, 3), np.float32), y_train=np.arange(4), x_test=np.ones((2, 3), np.float32),
             y_test=np.arange(2))
    assert len(load_split({"npz": str(p)}, "train")) == 4
    te = load_split({"npz": str(p)}, "test")
    assert len(te) == 2 and te.inputs["input"].max() == 1.0


def test_npz_object_arrays_refused(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="object arrays are refused"):
        load_split({"npz": str(p)}, "test")


def test_unknown_source_and_split():
    with pytest.raises(DataError, match="built-in sources: fashion-mnist, digits"):
        load_split("imagenet", "test")
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        load_split("fashion-mnist", "validation")


def test_missing_fashion_mnist_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESSOR_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_split("fashion-mnist", "test")


def test_fit_to_shape():
    ds = Dataset({"input": np.zeros((5, 1, 28, 28), np.float32)}, np.zeros(5))
    assert fit_to_shape(ds, [1, 784]).inputs["input"].shape == (5, 784)
    assert fit_to_shape(ds, [1, 28, 28]).inputs["input"].shape == (5, 28, 28)
    with pytest.raises(DataError, match="cannot be reshaped"):
        fit_to_shape(ds, [1, 3, 28, 28])


def test_nan_is_reported_with_count():
    x = np.zeros((6, 2), np.float32)
    x[1, 0] = np.nan
    x[4, 1] = np.inf
    with pytest.raises(DataError, match="in 2 sample"):
        Dataset({"input": x}).check_finite()


def test_mismatched_lengths():
    with pytest.raises(DataError, match="differ in length"):
        Dataset({"input": np.zeros((3, 1))}, np.zeros(4))


def test_digits_matches_scikit_learn_without_importing_it():
    import subprocess
    import sys

    code = ("import sys; from compressor.data import load_split; load_split('digits', 'test'); "
            "print(sorted(m for m in ('sklearn', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from sklearn.datasets import load_digits

    from compressor.data.sources import _digits_arrays

    images, target = _digits_arrays()
    ref = load_digits()
    assert np.array_equal(images, ref.images) and np.array_equal(target, ref.target)
