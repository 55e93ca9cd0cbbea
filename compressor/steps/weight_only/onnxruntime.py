"""Weight-only INT4/INT8 for ONNX Runtime: MatMul -> ``MatMulNBits`` with
onnxruntime.quantization's MatMulNBitsQuantizer (RTN, k-quant, GPTQ, HQQ).

Mixed precision runs the quantizer twice: first the layers kept at INT8 (every other
MatMul excluded), then the rest at the step's bit width (the INT8 layers are
MatMulNBits by then, so the second pass leaves them alone).

AWQ, scale estimation and ``ratio`` (sensitivity-ranked INT8 layers) are NNCF's (except
scale estimation with ``algorithm: gptq``, which turns on GPTQ's own MSE scale search): NNCF
compresses the ONNX model itself (its ONNX backend writes MatMulNBits for opset < 21),
leaving the INT8 layers in float, which an INT8 RTN pass then quantizes. HQQ's float zero
points become integer ones (zero_points.py) so that the packed kernels run it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from compressor.errors import StepError
from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig
from compressor.steps.weight_only.layers import int8_layers, weight_matmuls
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


class _Reader:
    """An onnxruntime CalibrationDataReader over prepared feed dicts (GPTQ)."""

    def __init__(self, feeds: list[dict[str, Any]]):
        self.feeds = feeds
        self.it = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.feeds)

    def __iter__(self):  # the GPTQ loop iterates the reader (ORT 1.31)
        return iter(self.feeds)

    def __deepcopy__(self, memo: Any) -> _Reader:  # ORT deep-copies readers; the feeds are read-only
        return _Reader(self.feeds)


def _algo_config(cfg: WeightQuantizeConfig, bits: int, nodes: Iterable[str], calibration: list[dict] | None,
                 embedding: bool) -> Any:
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    ops = ("MatMul", "Gather") if embedding else ("MatMul",)
    custom = {n: {"bits": bits} for n in nodes}  # the INC-based algorithms read bits per node
    # the INT8 layers of an INT4 model: RTN (HQQ is 4-bit only; ORT's GPTQ pass would ignore the exclusions)
    if cfg.algorithm == "rtn" or (bits == 8 and cfg.bits == 4 and cfg.algorithm in ("hqq", "gptq")):
        return mnq.DefaultWeightOnlyQuantConfig(block_size=_block(cfg), is_symmetric=cfg.symmetric,
                                                accuracy_level=cfg.accuracy_level or None, bits=bits,
                                                op_types_to_quantize=ops, channel_wised_quantize=cfg.group_size == -1)
    if cfg.algorithm == "k_quant":
        return mnq.KQuantWeightOnlyQuantConfig(customized_weight_config=custom)
    if cfg.algorithm == "hqq":
        return mnq.HQQWeightOnlyQuantConfig(block_size=_block(cfg), bits=bits)
    if not calibration:
        raise StepError("weight_quantize algorithm 'gptq' needs calibration text (data.text.calibration_samples)")
    # scale_estimation with ORT's GPTQ: its own scale search (mse: clip ratios that minimise the error)
    algo = mnq.GPTQWeightOnlyQuantConfig(calibration_data_reader=_Reader(calibration), block_size=_block(cfg),
                                         mse=cfg.scale_estimation)
    algo.customized_weight_config = custom
    return algo


def _block(cfg: WeightQuantizeConfig) -> int:
    return 128 if cfg.group_size == -1 else cfg.group_size


def quantize_matmul_nbits(src: Path, dst: Path, cfg: WeightQuantizeConfig, layers: int,
                          calibration: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Quantize ``src`` (the exported decoder) into ``dst``; returns the step details."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    names = weight_matmuls(model)
    originals = _weights(model, names) if cfg.algorithm == "hqq" and cfg.hqq_zero_points == "integer" else None
    keep8 = int8_layers(names, cfg.mixed, layers) if cfg.bits == 4 else []
    extra: dict[str, Any] = {}
    if cfg.algorithm == "hqq" and cfg.ratio < 1.0:
        keep8 += _hqq_mixed(model, [n for n in names if n not in keep8], cfg, extra)
    passes = ([(8, keep8)] if keep8 else []) + [(cfg.bits, [n for n in names if n not in keep8])]
    if cfg.algorithm == "hqq" and cfg.bits == 8:
        raise StepError("weight_quantize algorithm 'hqq' quantizes to 4 bits only (use rtn for bits: 8)")
    if uses_nncf(cfg):
        from compressor.steps.weight_only.nncf_onnx import nncf_int4

        model, extra = nncf_int4(model, cfg, keep8, calibration)
        passes = [(8, weight_matmuls(model))]  # what NNCF left in float: the head and its INT8 choices
    for i, (bits, nodes) in enumerate(passes):
        if not nodes:
            continue
        last = i == len(passes) - 1
        algo = _algo_config(cfg, bits, nodes, calibration, embedding=cfg.quantize_embedding and last and bits == 4)
        skip = [n for n in names if n not in nodes]
        try:
            with quiet("onnxruntime", "neural_compressor", ignore_warnings=True):
                q = MatMulNBitsQuantizer(model, bits=bits, block_size=_block(cfg), is_symmetric=cfg.symmetric,
                                         accuracy_level=cfg.accuracy_level or None, nodes_to_exclude=skip,
                                         algo_config=algo)
                q.process()
        except Exception as e:  # noqa: BLE001 - the quantizer raises assorted types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StepError(f"MatMulNBits quantization ({cfg.algorithm}, {bits} bits) failed: {first}") from e
        model = q.model.model
    if cfg.algorithm == "hqq" and cfg.hqq_zero_points != "float":
        from compressor.steps.weight_only.zero_points import integer_zero_points

        extra.update(integer_zero_points(model, cfg.hqq_zero_points, cfg.accuracy_level, originals))
    counts = {}
    for n in model.graph.node:
        if n.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            b = next((a.i for a in n.attribute if a.name == "bits"), 4)
            counts[f"{n.op_type}:{b}"] = counts.get(f"{n.op_type}:{b}", 0) + 1
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return {"engine": "onnxruntime-matmulnbits", "algorithm": cfg.algorithm, "bits": cfg.bits,
            "group_size": cfg.group_size, "symmetric": cfg.symmetric and cfg.algorithm != "hqq",
            "accuracy_level": cfg.accuracy_level,
            "int8_layers": keep8, "quantized_ops": counts, "weight_matmuls": len(names), **extra}


def _weights(model: Any, names: list[str]) -> dict[str, Any]:
    """MatMul name -> its float weight [K, N] (before quantization)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    wanted = set(names)
    return {n.name: numpy_helper.to_array(inits[n.input[1]]) for n in model.graph.node if n.name in wanted}


def _hqq_mixed(model: Any, names: list[str], cfg: WeightQuantizeConfig, extra: dict[str, Any]) -> list[str]:
    """``ratio`` with HQQ: the layers of ``names`` HQQ fits worst, to keep at INT8 (hqq_mixed.py)."""
    from compressor.steps.weight_only.hqq_mixed import int8_by_hqq_error

    weights = {n: w.T for n, w in _weights(model, names).items()}  # [K, N] -> [N, K]
    keep, errors = int8_by_hqq_error(weights, cfg.group_size, cfg.ratio)
    extra.update(ratio=cfg.ratio, sensitivity_metric="hqq_reconstruction_error", hqq_int8_layers=keep,
                 hqq_errors=errors)
    return keep


def uses_nncf(cfg: WeightQuantizeConfig) -> bool:
    """Whether the INT4 layers come from NNCF (AWQ, scale estimation, sensitivity ratio)."""
    return cfg.bits == 4 and cfg.algorithm != "hqq" and (
        cfg.awq or cfg.ratio < 1.0 or (cfg.scale_estimation and cfg.algorithm != "gptq"))
