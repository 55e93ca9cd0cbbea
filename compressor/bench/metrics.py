"""Moved to :mod:`compressor.metrics`. This alias stays only until the quantize refactor
(issue #13) imports ``compressor.metrics`` directly; nothing else may use it."""

from compressor.metrics import METRICS, MetricInfo, compute_metric, metric_drop, metric_info  # noqa: F401
