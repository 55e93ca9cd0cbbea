"""compressor: distill, prune and INT8-quantize trained models, export them via ONNX
to deployment targets, and benchmark every target against the original model.

The public Python API is :mod:`compressor.api`; ``compressor.run`` and ``compressor.check``
are its two main calls (see docs/api.md)::

    import compressor

    report = compressor.run("recipes/quickstart.yaml", out="runs/qs")
    verdict = compressor.check(report, max_accuracy_drop=0.5)

Importing this package is cheap: the API, torch, OpenVINO and TensorRT are imported only
when used.
"""

from typing import Any

from compressor.utils.versions import COMPRESSOR_VERSION as __version__

__all__ = ["__version__", "check", "run"]


def __getattr__(name: str) -> Any:
    # `compressor.bench` is the measurement package, so the API's bench is `compressor.api.bench`
    if name in ("run", "check"):
        from compressor import api

        return getattr(api, name)
    raise AttributeError(f"module 'compressor' has no attribute {name!r}")
