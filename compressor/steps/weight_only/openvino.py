"""Weight-only INT4/INT8 for OpenVINO: NNCF ``compress_weights`` on the OpenVINO model
read from the exported decoder, saved as IR (.xml/.bin).

NNCF's INT4 modes keep the embedding and the last MatMul (the lm-head) at its backup
precision INT8 unless ``all_layers`` is set, which is what ``mixed: head`` means here;
``mixed: edges`` keeps the first and last decoder layers at INT8 too (a first INT4
pass that ignores them, then an INT8 pass over what is left in float).
AWQ, scale estimation, GPTQ (``algorithm: gptq``) and the Hessian sensitivity of
``ratio < 1`` need calibration text (NNCF runs the model on it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import StepError
from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig
from compressor.steps.weight_only.layers import int8_layers
from compressor.utils.quiet import quiet


def _mode(bits: int, symmetric: bool) -> Any:
    from nncf import CompressWeightsMode

    return getattr(CompressWeightsMode, f"INT{bits}_{'SYM' if symmetric else 'ASYM'}")


def transpose_weights(model: Any) -> int:
    """Store every 2-D constant MatMul weight as [N, K] with ``transpose_b`` (a torch Linear's
    layout; the ONNX export has [K, N]): NNCF 3.4's GPTQ handles that layout only. Same
    function; returns how many MatMuls it rewrote."""
    import openvino.opset13 as ops

    done = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_transpose_b() or op.get_transpose_a():
            continue
        w = op.input_value(1).get_node()
        if w.get_type_name() != "Constant" or len(w.get_output_shape(0)) != 2:
            continue
        new = ops.matmul(op.input_value(0), ops.constant(np.ascontiguousarray(w.get_data().T)), transpose_a=False,
                         transpose_b=True)
        new.set_friendly_name(op.get_friendly_name())
        op.output(0).replace(new.output(0))
        done += 1
    model.validate_nodes_and_infer_types()
    return done


def save_ir(model: Any, dst_xml: Path) -> None:
    """Save an OpenVINO model as IR, both files or neither (weights stay as they are typed)."""
    import openvino as ov

    dst_xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst_xml.stem}.", dir=dst_xml.parent))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        os.replace(tmp / "model.bin", dst_xml.with_suffix(".bin"))  # .bin first: an .xml never points at nothing
        os.replace(tmp / "model.xml", dst_xml)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compress_openvino(src: Path, dst_xml: Path, cfg: WeightQuantizeConfig, layers: int,
                      calibration: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Compress the weights of ``src`` (ONNX) into OpenVINO IR at ``dst_xml``; returns details."""
    import nncf
    import openvino as ov

    from compressor.steps.weight_only.nncf_onnx import nncf_options

    if cfg.algorithm not in ("rtn", "gptq", "hqq"):
        raise StepError(f"weight_quantize algorithm {cfg.algorithm!r} is an ONNX Runtime algorithm; OpenVINO "
                        "targets use NNCF (rtn or gptq, with awq / scale_estimation / ratio) or hqq")
    if cfg.algorithm == "gptq" and cfg.bits != 4:
        raise StepError("NNCF's GPTQ applies to INT4 weight compression only (bits: 4)")
    model = ov.Core().read_model(str(src))
    if cfg.algorithm == "hqq":
        return _hqq(model, dst_xml, cfg, layers)
    if cfg.algorithm == "gptq":
        transpose_weights(model)
    names = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]
    edges = [n for n in int8_layers(names, "edges", layers) if n != "lm_head"] if cfg.mixed == "edges" else []
    kwargs: dict[str, Any] = {"mode": _mode(cfg.bits, cfg.symmetric)}
    if cfg.bits == 4:
        # a layer whose input width the group does not divide (SmolLM2: 576 vs 128) gets the largest
        # power-of-two group that does (64); ONNX Runtime pads the last group instead
        kwargs.update(nncf_options(cfg, calibration), all_layers=cfg.mixed == "none")
        if edges:
            kwargs["ignored_scope"] = nncf.IgnoredScope(names=edges, validate=True)
    try:
        with quiet("nncf", ignore_warnings=True):
            model = nncf.compress_weights(model, **kwargs)
            if edges:
                model = nncf.compress_weights(model, mode=_mode(8, False))  # what the INT4 pass left in float
    except Exception as e:  # noqa: BLE001 - NNCF raises assorted types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StepError(f"NNCF weight compression failed: {first}") from e
    save_ir(model, dst_xml)
    out = {"engine": "nncf-compress_weights", "nncf": nncf.__version__, "mode": kwargs["mode"].value,
           "group_size": cfg.group_size if cfg.bits == 4 else -1,
           "group_size_fallback": "adjust" if cfg.bits == 4 else None, "algorithm": cfg.algorithm, "awq": cfg.awq,
           "scale_estimation": cfg.scale_estimation, "ratio": cfg.ratio, "all_layers": cfg.mixed == "none",
           "int8_layers": edges, "weight_constants": _precisions(model)}
    if "sensitivity_metric" in kwargs:
        out["sensitivity_metric"] = kwargs["sensitivity_metric"].value
    return out


def _precisions(model: Any) -> dict[str, int]:
    """How many integer weight constants of each type the model holds."""
    out: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() == "Constant":
            t = op.get_element_type().get_type_name()
            if t in ("u4", "i4", "u8", "i8"):
                out[t] = out.get(t, 0) + 1
    return out


def _hqq(model: Any, dst_xml: Path, cfg: WeightQuantizeConfig, layers: int) -> dict[str, Any]:
    """HQQ INT4 (hqq_openvino.py) on every MatMul but the INT8 ones, then NNCF INT8 on what is left."""
    import nncf

    from compressor.steps.weight_only.hqq_openvino import hqq_openvino

    names = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"
             and op.input_value(1).get_node().get_type_name() == "Constant"]
    # the lm-head is the last weight MatMul (OpenVINO names it after its output, "logits")
    keep8 = [] if cfg.mixed == "none" else [names[-1]] + [n for n in int8_layers(names, cfg.mixed, layers)
                                                          if n != "lm_head"]
    extra: dict[str, Any] = {}
    if cfg.ratio < 1.0:  # the layers HQQ fits worst stay INT8 (hqq_mixed.py), as on ONNX Runtime
        from compressor.steps.weight_only.hqq_mixed import int8_by_hqq_error

        weights = {op.get_friendly_name(): _weight_nk(op) for op in model.get_ordered_ops()
                   if op.get_type_name() == "MatMul" and op.get_friendly_name() in set(names) - set(keep8)}
        chosen, errors = int8_by_hqq_error(weights, cfg.group_size, cfg.ratio)
        keep8 += chosen
        extra = {"ratio": cfg.ratio, "sensitivity_metric": "hqq_reconstruction_error", "hqq_int8_layers": chosen,
                 "hqq_errors": errors}
    n4 = hqq_openvino(model, cfg.group_size, set(keep8))
    with quiet("nncf", ignore_warnings=True):
        model = nncf.compress_weights(model, mode=_mode(8, False))  # the INT8 layers and the embedding
    save_ir(model, dst_xml)
    return {"engine": "hqq-openvino", "nncf": nncf.__version__, "algorithm": "hqq", "group_size": cfg.group_size,
            "zero_points": "float", "hqq_layers": n4, "int8_layers": keep8, "weight_constants": _precisions(model),
            **extra}


def _weight_nk(op: Any) -> np.ndarray:
    """A constant-weight MatMul's weight as ``[N, K]``."""
    w = op.input_value(1).get_node().get_data().astype(np.float32)
    return w if op.get_transpose_b() else w.T
