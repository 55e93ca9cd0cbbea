"""The INT8 QDQ formats the tool chooses between, shared by the quantize step (which measures
them on a model) and ``compressor device probe`` (which measures them on a device's layers).

    >>> FORMATS["U8U8"]["weight_type"]
    'uint8'
"""

from __future__ import annotations

from typing import Any

#: name -> the quantize settings it stands for (per-channel weights; other settings as the recipe says)
FORMATS: dict[str, dict[str, Any]] = {
    "U8S8": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": False},
    "U8U8": {"activation_type": "uint8", "weight_type": "uint8", "reduce_range": False},
    "U8S8 reduce_range": {"activation_type": "uint8", "weight_type": "int8", "reduce_range": True},
    "S8S8": {"activation_type": "int8", "weight_type": "int8", "reduce_range": False},
}
#: the quantize keys a format sets: a recipe or target file that sets one pins the format
FORMAT_KEYS = ("activation_type", "weight_type", "reduce_range")
#: the formats each runtime has INT8 kernels for. OpenVINO's CPU plugin takes signed symmetric
#: weights (U8 weights are not its INT8 path), so U8U8 is not its candidate.
RUNTIME_FORMATS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("U8S8", "U8U8", "U8S8 reduce_range", "S8S8"),
    "openvino": ("U8S8", "U8S8 reduce_range", "S8S8"),
}
#: INT8 pays when it runs at least this many times FP32: below it the gain is within the spread
#: of short interleaved timing on a shared machine (p10-p90 of 8-30 rounds: about +-3-5%)
PAYS_AT = 1.05
