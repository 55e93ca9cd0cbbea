"""Per-tensor activation range choice: each activation tensor gets the range (min/max,
percentile or entropy) under which its INT8 rounding-plus-clipping error is smallest on
calibration data.

One calibration pass per method gives every tensor's range under that method (ORT's
calibrators, saved as ORT calibration caches). The tensors' FP32 values on a calibration
subset are then fake-quantized with each candidate range, and the range with the smallest
mean squared error wins. The result is written as one ORT calibration cache, which
``quantize_static`` reads instead of calibrating: the choice costs no change to the quantizer.

The error measured is the tensor's own (what its consuming layers read), not the final
output's: it is cheap (one FP32 pass) and is the criterion of the "MSE" calibrators that
TensorRT and NNCF ship. A wide range wastes resolution on outliers, a tight one clips them;
depthwise networks have both kinds of tensors side by side, so no single method suits all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# methods whose per-tensor ranges compete; the configured method is always among them
METHODS = ("minmax", "percentile", "entropy")
MSE_SAMPLES = 16  # calibration samples whose FP32 activations are fake-quantized


def _qrange(activation_type: str) -> tuple[int, int]:
    return (0, 255) if activation_type == "uint8" else (-128, 127)


def _params(lo: float, hi: float, activation_type: str, symmetric: bool) -> tuple[float, float, int, int]:
    """Scale, zero point and integer limits the way ORT's quantizer derives them from a range
    (the range always includes 0; symmetric: +-max|range|)."""
    qmin, qmax = _qrange(activation_type)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        m = max(abs(lo), abs(hi))
        lo, hi = -m, m
        if activation_type == "int8":
            qmin = -127  # ORT's symmetric int8 range
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zp = (qmin + qmax + 1) // 2 if symmetric and activation_type == "uint8" else int(round(qmin - lo / scale))
    if symmetric and activation_type == "int8":
        zp = 0
    return scale, float(zp), qmin, qmax


def quantization_mse(x: np.ndarray, lo: float, hi: float, activation_type: str, symmetric: bool) -> float:
    """Sum of squared errors of ``x`` after quantize-dequantize with range [lo, hi]."""
    scale, zp, qmin, qmax = _params(lo, hi, activation_type, symmetric)
    q = np.clip(np.round(x / scale) + zp, qmin, qmax)
    return float(np.sum(((q - zp) * scale - x) ** 2, dtype=np.float64))


def _range(td: Any) -> tuple[float, float]:
    lo, hi = td.range_value
    return float(np.min(lo)), float(np.max(hi))


def choose_ranges(model: Path, caches: dict[str, Path], feeds: Iterable[dict[str, np.ndarray]],
                  configured: str, dst: Path, activation_type: str, symmetric: bool) -> dict[str, Any]:
    """Write to ``dst`` an ORT calibration cache (method ``configured``, so ``quantize_static``
    accepts it) with, for each tensor, the candidate range of least quantization MSE over
    ``feeds`` on the FP32 ``model``; ``caches``: method -> that method's cache. Returns the
    choice: counts per method and the tensors whose range changed from the configured method."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import (TensorData, TensorsData, load_tensors_data,
                                                    save_tensors_data)

    loaded = {m: load_tensors_data(p) for m, p in caches.items()}
    base = loaded[configured]
    names = [n for n in base.keys() if all(n in d for d in loaded.values())]
    m = onnx.load(str(model))
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    wanted = [o for o in outs if o in set(names)]
    err = {n: dict.fromkeys(loaded, 0.0) for n in wanted}
    for feed in feeds:
        values = dict(zip(outs, sess.run(outs, feed)))
        for n in wanted:
            x = values[n].astype(np.float32, copy=False)
            if x.dtype.kind != "f":
                continue
            for meth, d in loaded.items():
                err[n][meth] += quantization_mse(x, *_range(d[n]), activation_type, symmetric)
    chosen: dict[str, Any] = {}
    picks = {meth: 0 for meth in loaded}
    changed = []
    for n in base.keys():
        meth = min(err[n], key=lambda k: (err[n][k], k != configured)) if n in err else configured
        picks[meth] += 1
        lo, hi = loaded[meth][n].range_value
        chosen[n] = TensorData(lowest=lo, highest=hi)
        if meth != configured:
            gain = err[n][configured] / max(err[n][meth], 1e-30)
            changed.append({"tensor": n, "method": meth, "mse_ratio": round(gain, 2)})
    save_tensors_data(TensorsData(base.calibration_method, chosen), dst)
    changed.sort(key=lambda c: -c["mse_ratio"])
    return {"tensors": len(base.keys()), "picked": picks, "changed": changed}
