"""Installed versions of the libraries a result depends on (reports and step-cache keys)."""

from __future__ import annotations

from importlib import metadata

# the package version (pyproject.toml says the same); here, so no module imports the root package
COMPRESSOR_VERSION = "0.1.0"


def package_versions(names: tuple[str, ...] = ("onnxruntime", "openvino", "torch", "onnx", "nncf", "executorch",
                                               "torch-pruning", "neural-compressor", "tensorrt")) -> dict[str, str]:
    """Version of each installed distribution in ``names``; missing ones are left out."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out
