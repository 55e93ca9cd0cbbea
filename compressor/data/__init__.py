"""Datasets as plain numpy arrays (no torch), so the benchmark path runs on a device
that has only a runtime installed.

A :class:`Dataset` holds named input arrays (``{"input": x}`` for single-input
models, ``{"input_ids": ..., "attention_mask": ...}`` for transformers) and optional
labels. Sources: the built-in ``fashion-mnist`` (Debian package
``dataset-fashion-mnist``) and ``digits`` (scikit-learn), ``{npz: file}``, and
``{factory: file.py:fn}``.
"""

from compressor.data.dataset import Dataset, fit_to_shape
from compressor.data.sources import load_split

__all__ = ["Dataset", "fit_to_shape", "load_split"]
