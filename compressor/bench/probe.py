"""``compressor device probe``: measure a device's INT8 kernels once, on the device, and write
a profile a recipe can name (``device: profiles/pi5.json``).

Torch-free (numpy + onnxruntime, and OpenVINO when installed): a handful of representative
blocks built with ``onnx.helper`` (3x3 convs, depthwise, pointwise, transformer linears,
attention matmuls; four layers each), each quantized in every INT8 format and timed against its FP32 version in
interleaved rounds; a saturation check (a U8 x S8 product whose exact integer result is known:
CPUs whose INT8 kernels sum byte pairs into 16 bits, x86 without VNNI, return a smaller one);
and the device's INT8 : FP32 multiply-add rate on one large matrix product.

    >>> profile = probe(threads=2)               # doctest: +SKIP
    >>> profile["runtimes"]["onnxruntime"]["formats"]["U8S8"]["ratio"]   # doctest: +SKIP
    2.4
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.bench.latency import measure_interleaved
from compressor.utils.ort_sessions import no_spinning
from compressor.targets.devices import cpu_identity, host_device
from compressor.targets.profiles import PROFILE_VERSION
from compressor.utils.int8_formats import FORMATS, PAYS_AT, RUNTIME_FORMATS

# (name, input shape): blocks of the layers that dominate CNNs and transformers at batch 1. Each
# block stacks DEPTH layers (ReLU between) so the quantize/dequantize of its input and output, a
# fixed cost a single-layer model would be dominated by, weighs as little as inside a network
LAYERS: list[tuple[str, list[int]]] = [
    ("conv3x3", [1, 64, 28, 28]),       # ResNet-style 3x3 convolutions
    ("depthwise", [1, 192, 28, 28]),    # MobileNet's depthwise 3x3
    ("pointwise", [1, 96, 28, 28]),     # MobileNet's 1x1 convolutions
    ("linear", [1, 128, 384]),          # MiniLM-sized transformer linears (seq 128, hidden 384)
    ("attention", [1, 12, 128, 32]),    # scores = Q K^T, then scores V, 12 heads (activations only)
]
DEPTH = 4
SATURATION_K = 64  # a U8 x S8 dot product of 64 terms: 255 * 127 per term


def _model(name: str, shape: list[int], rng: np.random.Generator) -> Any:
    """One block of ``DEPTH`` FP32 layers as an ONNX model (input ``x``, output ``y``)."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []
    c = shape[1]
    x = "x"
    for i in range(DEPTH if name != "attention" else 1):
        w, y = f"w{i}", f"h{i}"
        if name == "conv3x3":
            inits += [numpy_helper.from_array(rng.normal(0, 0.06, (c, c, 3, 3)).astype(np.float32), w)]
            nodes.append(helper.make_node("Conv", [x, w], [y], pads=[1, 1, 1, 1]))
        elif name == "depthwise":
            inits += [numpy_helper.from_array(rng.normal(0, 0.3, (c, 1, 3, 3)).astype(np.float32), w)]
            nodes.append(helper.make_node("Conv", [x, w], [y], pads=[1, 1, 1, 1], group=c))
        elif name == "pointwise":
            inits += [numpy_helper.from_array(rng.normal(0, 0.15, (c, c, 1, 1)).astype(np.float32), w)]
            nodes.append(helper.make_node("Conv", [x, w], [y]))
        elif name == "linear":
            k = shape[-1]
            inits += [numpy_helper.from_array(rng.normal(0, 0.07, (k, k)).astype(np.float32), w)]
            nodes.append(helper.make_node("MatMul", [x, w], [y]))
        else:  # attention: (x x^T) x over the last two axes
            nodes += [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
                      helper.make_node("MatMul", ["x", "xt"], ["s"]),
                      helper.make_node("MatMul", ["s", "x"], [y])]
        nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
        x = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class _Reader:
    """A few random calibration batches for ORT's quantizer."""

    def __init__(self, shape: list[int], rng: np.random.Generator):
        self.batches = [{"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(4)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.batches.pop() if self.batches else None


def _quantize(src: Path, dst: Path, fmt: dict[str, Any], shape: list[int]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from compressor.utils.quiet import quiet

    q = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with quiet():
        quantize_static(str(src), str(dst), _Reader(shape, np.random.default_rng(1)), quant_format=QuantFormat.QDQ,
                        activation_type=q[fmt["activation_type"]], weight_type=q[fmt["weight_type"]],
                        per_channel=True, reduce_range=fmt["reduce_range"], extra_options={"WeightSymmetric": True})


def _ort_call(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.log_severity_level = 3
    no_spinning(so)  # the probe times several sessions interleaved
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda: s.run(None, feeds)


def _ov_call(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], object]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                          "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    values = list(feeds.values())
    return lambda: request.infer(values)


def _ratios(calls: dict[str, Callable[[], object]], rounds: int) -> tuple[dict[str, float], float]:
    """Each call's speedup over the first (median of per-round ratios) and the first's p50 ms."""
    first = next(iter(calls))
    calls[first]()
    t0 = time.perf_counter()
    calls[first]()
    one = max(time.perf_counter() - t0, 1e-6)
    per_round = int(np.clip(0.25 / (one * len(calls)), 2, 20))
    timing = measure_interleaved(calls, rounds=rounds, per_round=per_round, warmup=2)
    return ({n: round(float(np.median(timing.speedups[n])), 4) for n in list(calls)[1:]},
            round(timing.stats[first].p50, 4))


def _geomean(values: list[float]) -> float:
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 4)


def _runtime(name: str, loader: Callable[..., Callable[[], object]], models: dict[str, dict[str, Path]],
             threads: int, rounds: int) -> dict[str, Any]:
    """Per-format ratios on one runtime: per layer, and their geometric mean."""
    rng = np.random.default_rng(0)
    per_layer: dict[str, dict[str, float]] = {}
    fp32_ms: dict[str, float] = {}
    errors: dict[str, str] = {}
    for layer, shape in LAYERS:
        feeds = {"x": rng.normal(0, 1, shape).astype(np.float32)}
        calls = {"FP32": loader(models[layer]["FP32"], feeds, threads)}
        for label in RUNTIME_FORMATS[name]:
            try:
                calls[label] = loader(models[layer][label], feeds, threads)
            except Exception as e:  # noqa: BLE001 - a format this runtime cannot load is recorded, not fatal
                errors[f"{layer}/{label}"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        ratios, fp32_ms[layer] = _ratios(calls, rounds)
        per_layer[layer] = ratios
    formats = {}
    for label in RUNTIME_FORMATS[name]:
        vals = {layer: r[label] for layer, r in per_layer.items() if label in r}
        if vals:
            formats[label] = {"ratio": _geomean(list(vals.values())), "layers": vals}
    out: dict[str, Any] = {"threads": threads, "fp32_ms": fp32_ms, "formats": formats}
    if errors:
        out["errors"] = errors
    return out


def saturation_check(threads: int = 1) -> dict[str, Any]:
    """A U8 x S8 integer matrix product whose exact result is known (every term 255 * 127):
    kernels that add byte-pair products into 16-bit sums (x86 without VNNI) saturate each pair
    at 32767 and return about half of it."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = SATURATION_K, 16
    w = numpy_helper.from_array(np.full((k, n), 127, dtype=np.int8), "w")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "saturation",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [8, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = int(s.run(None, {"a": np.full((8, k), 255, dtype=np.uint8)})[0].min())
    exact = 255 * 127 * k
    return {"format": "U8S8", "expected": exact, "observed": got, "saturates": got != exact,
            "saturated_value": 32767 * (k // 2)}


def mac_ratio(threads: int, rounds: int = 6) -> dict[str, float]:
    """INT8 : FP32 multiply-add rate on one 128x1024x1024 matrix product (same MACs: the ratio
    of their times). Near 1: INT8 buys no arithmetic throughput on this CPU."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    m, k, n = 128, 1024, 1024

    def build(op: str, a_type: int, w: np.ndarray) -> bytes:
        out_type = TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32
        g = helper.make_graph([helper.make_node(op, ["a", "w"], ["y"])], op,
                              [helper.make_tensor_value_info("a", a_type, [m, k])],
                              [helper.make_tensor_value_info("y", out_type, None)],
                              [numpy_helper.from_array(w, "w")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()

    import onnxruntime as ort

    def call(model: bytes, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.log_severity_level = threads, 3
        no_spinning(so)
        s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return lambda: s.run(None, feeds)

    calls = {
        "FP32": call(build("MatMul", TensorProto.FLOAT, rng.normal(0, 1, (k, n)).astype(np.float32)),
                     {"a": rng.normal(0, 1, (m, k)).astype(np.float32)}),
        "U8S8": call(build("MatMulInteger", TensorProto.UINT8, rng.integers(-64, 64, (k, n), dtype=np.int8)),
                     {"a": rng.integers(0, 255, (m, k), dtype=np.uint8)}),
        "U8U8": call(build("MatMulInteger", TensorProto.UINT8, rng.integers(0, 255, (k, n), dtype=np.uint8)),
                     {"a": rng.integers(0, 255, (m, k), dtype=np.uint8)}),
    }
    ratios, _ = _ratios(calls, rounds)
    return ratios


def probe(threads: int | None = None, rounds: int = 8, openvino: bool | None = None,
          log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure this device; returns the profile (see the module docstring)."""
    import onnx
    import onnxruntime as ort

    t0 = time.perf_counter()
    threads = threads or min(4, os.cpu_count() or 1)
    cpu = cpu_identity()
    device = host_device(cpu.get("model"), set(str(cpu.get("flags", "")).split()))
    with tempfile.TemporaryDirectory(prefix="compressor-probe-") as tmp:
        models: dict[str, dict[str, Path]] = {}
        rng = np.random.default_rng(0)
        for layer, shape in LAYERS:
            src = Path(tmp) / f"{layer}.onnx"
            onnx.save(_model(layer, shape, rng), str(src))
            models[layer] = {"FP32": src}
            for label in RUNTIME_FORMATS["onnxruntime"]:
                dst = Path(tmp) / f"{layer}-{label.replace(' ', '-')}.onnx"
                _quantize(src, dst, FORMATS[label], shape)
                models[layer][label] = dst
        log("onnxruntime: timing each format against FP32 on "
            + ", ".join(name for name, _ in LAYERS))
        runtimes = {"onnxruntime": {"version": ort.__version__, **_runtime("onnxruntime", _ort_call, models,
                                                                            threads, rounds)}}
        if openvino is not False:
            try:
                import openvino as ov
            except ImportError:
                ov = None
                if openvino:
                    raise
            if ov is not None:
                log("openvino: timing each format against FP32")
                runtimes["openvino"] = {"version": ov.__version__, **_runtime("openvino", _ov_call, models,
                                                                              threads, rounds)}
    log("saturation check and INT8:FP32 multiply-add rate")
    sat = saturation_check()
    macs = mac_ratio(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "kind": "compressor-device-profile", "version": PROFILE_VERSION,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu, "device": device.describe(), "threads": threads, "load_average": load,
        "runtimes": runtimes, "saturation": sat, "int8_mac_ratio": macs,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def summary(profile: dict[str, Any]) -> list[str]:
    """The profile in a few lines, for the terminal."""
    cpu = profile["cpu"]
    ident = cpu.get("model") or cpu.get("part") or "?"
    fam = f" (family {cpu['family']} model {cpu['model_number']})" if cpu.get("family") else ""
    lines = [f"{ident}{fam}, {profile['device']['label']}, {profile['threads']} thread(s), "
             f"{profile['date']}, load {profile.get('load_average')}"]
    for rt, data in profile["runtimes"].items():
        fmts = ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in data["formats"].items())
        lines.append(f"{rt} {data['version']}: INT8 vs FP32 (geometric mean over {len(LAYERS)} blocks): {fmts}")
    sat = profile["saturation"]
    lines.append(f"U8S8 saturation: {'YES' if sat['saturates'] else 'no'} (exact {sat['expected']}, "
                 f"got {sat['observed']})")
    m = profile["int8_mac_ratio"]
    lines.append("INT8:FP32 multiply-add rate (128x1024x1024): " + ", ".join(f"{k} {v:.2f}x" for k, v in m.items()))
    best = max((v["ratio"] for d in profile["runtimes"].values() for v in d["formats"].values()), default=0.0)
    if best < PAYS_AT:
        lines.append(f"INT8 does not pay on this device for these layers: no format ran >= {PAYS_AT}x FP32")
    lines.append(f"probe took {profile['seconds']:.0f} s")
    return lines
