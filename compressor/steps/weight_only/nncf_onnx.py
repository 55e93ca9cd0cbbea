"""NNCF's data-aware INT4 (AWQ, scale estimation, sensitivity-ranked mixed precision) on the
ONNX decoder for ONNX Runtime targets: ``nncf.compress_weights`` on the ONNX model writes
``MatMulNBits`` (opset < 21). The embedding Gather and the INT8 layers (``mixed``) are left
to ONNX Runtime's own quantizer; so are the layers NNCF's ``ratio`` keeps out of INT4
(``backup_mode`` NONE leaves them float, the caller's INT8 pass quantizes them).

    >>> model, details = nncf_int4(onnx.load("decoder.onnx"), cfg, ["lm_head"], feeds)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from compressor.errors import StepError
from compressor.recipe.schema import WeightQuantizeConfig
from compressor.utils.quiet import quiet


def nncf_options(cfg: WeightQuantizeConfig, calibration: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``compress_weights`` arguments both runtimes share: mode, group size (ADJUST
    fallback: a 576-wide layer gets groups of 64 where 128 does not divide it), ratio,
    sensitivity metric, AWQ / scale estimation / GPTQ with their dataset."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedCompressionParameters, GroupSizeFallbackMode

    gptq = cfg.algorithm == "gptq"
    needs_data = cfg.awq or cfg.scale_estimation or gptq
    if needs_data and not calibration:
        raise StepError("awq / scale_estimation / gptq need calibration text (data.text.calibration_samples)")
    mode = getattr(nncf.CompressWeightsMode, f"INT4_{'SYM' if cfg.symmetric else 'ASYM'}")
    kw: dict[str, Any] = {"mode": mode, "group_size": cfg.group_size, "ratio": cfg.ratio,
                          "advanced_parameters": AdvancedCompressionParameters(
                              group_size_fallback_mode=GroupSizeFallbackMode.ADJUST)}
    if cfg.ratio < 1.0:
        metric = cfg.sensitivity_metric or ("hessian_input_activation" if calibration else "weight_quantization_error")
        kw["sensitivity_metric"] = nncf.SensitivityMetric(metric)
        needs_data = needs_data or metric != "weight_quantization_error"
    if needs_data:
        if not calibration:
            raise StepError(f"sensitivity_metric {kw['sensitivity_metric'].value} needs calibration text")
        kw.update(dataset=nncf.Dataset(calibration), subset_size=len(calibration), awq=cfg.awq,
                  scale_estimation=cfg.scale_estimation, gptq=gptq or None)
    return kw


def nncf_int4(model: Any, cfg: WeightQuantizeConfig, keep8: list[str],
              calibration: list[dict[str, Any]] | None) -> tuple[Any, dict[str, Any]]:
    """(the model with NNCF's INT4 MatMulNBits, details); ``keep8`` and NNCF's backup layers stay float."""
    import nncf

    from compressor.steps.weight_only.zero_points import pack_zero_points

    if cfg.algorithm != "rtn":
        raise StepError(f"on ONNX Runtime, awq / ratio run NNCF's INT4, which does not combine with algorithm "
                        f"{cfg.algorithm} (use rtn)")
    kw = nncf_options(cfg, calibration)
    kw.update(all_layers=True, backup_mode=nncf.BackupMode.NONE,
              ignored_scope=nncf.IgnoredScope(names=keep8, types=["Gather"], validate=False))
    try:
        with quiet("nncf", ignore_warnings=True):
            out = nncf.compress_weights(model, **kw)
    except Exception as e:  # noqa: BLE001 - NNCF raises assorted types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StepError(f"NNCF weight compression (ONNX) failed: {first}") from e
    n4 = pack_zero_points(out, cfg.accuracy_level)
    details = {"int4_engine": f"nncf {nncf.__version__} (ONNX backend)", "awq": cfg.awq,
               "scale_estimation": cfg.scale_estimation, "ratio": cfg.ratio, "nncf_int4_layers": n4}
    if "sensitivity_metric" in kw:
        details["sensitivity_metric"] = kw["sensitivity_metric"].value
    return out, details
