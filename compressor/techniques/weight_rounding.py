"""Error-compensating weight rounding of a QDQ model (ORT engine, ``weight_rounding: gptq | adaround``).

Round-to-nearest rounds each weight on its own; the layer's output error is the sum of those
errors weighted by its inputs, and nothing makes them cancel. GPTQ (Frantar et al. 2022, the
OBQ update of Frantar and Alistarh 2022 done column by column) rounds a layer's input
columns in turn and spreads each rounding error onto the columns not yet rounded, weighted
by the inverse of the layer's input Hessian ``H = X X^T`` measured on calibration data. The
scales and zero points stay the quantizer's: only the integer weights change, so the model
keeps its QDQ form and runs on the same INT8 kernels, and bias correction (which reads the
dequantized weights) runs after it on the new weights.

Conv (any group count: a depthwise layer's channels each have their own 3x3 Hessian), Gemm
and MatMul with a constant 2-D weight. ``H`` comes from im2col patches of the layer's FP32
input (Conv) or its rows (Gemm/MatMul) on the calibration feeds, at most :data:`POSITIONS`
positions per feed. On MobileNetV2 the weights alone (activations FP32) carry about half
of the INT8 output error (benchmarks/results/mobilenet_techniques.md).

AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization")
learns instead whether each weight rounds up or down: a rounding offset ``h(V)`` in [0, 1] per
weight (a rectified sigmoid, started at the weight's fractional part, so the first iterate is
the FP32 weight), fitted by Adam to the same layer-output error ``tr(E H E^T) / N`` (``E`` the
weight error, ``N`` the positions behind ``H``: the mean squared output error on the
calibration data) plus a regulariser ``lambda * sum(1 - |2 h - 1|^beta)`` whose ``beta`` anneals
from 20 to 2 after a warm start without it, which drives every offset to 0 or 1. AIMET's
settings (lambda 0.01, warm start 20% of the iterations, beta 20 -> 2) are kept, with fewer
iterations and a larger step (the Hessian makes the loss exact over the calibration data: no
mini-batch noise). Every layer is optimised in one loop (their losses are independent and
Adam's steps are per weight). The loss is on the layer's FP32 input; the paper's asymmetric
variant (the input through the activation quantizer in front of the layer) was measured and
lost on MobileNetV2: output KL 0.031 against 0.025, 0.053 against 0.024 with bias correction
(benchmarks/results/mobilenet_techniques.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compressor.techniques._graph import node_attr
from compressor.techniques.base import Models, Technique, TunerTrial, register

POSITIONS = 2048  # input positions (im2col columns) sampled per calibration feed and layer
DAMP = 0.01  # Hessian damping, a fraction of its mean diagonal (GPTQ's default)


def _targets(model: Any, ref: Any) -> list[dict[str, Any]]:
    """Quantized Conv/Gemm/MatMul nodes whose weight is DequantizeLinear(integer initializer)
    and whose FP32 twin (same node name in ``ref``) has a float weight initializer."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    ref_nodes = {n.name: n for n in ref.graph.node if n.name}
    ref_inits = {t.name: t for t in ref.graph.initializer}
    out = []
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or n.name not in ref_nodes:
            continue
        dq = producer.get(n.input[1])
        r = ref_nodes[n.name]
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits \
                or r.input[1] not in ref_inits or producer.get(n.input[0]) is None:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        w = numpy_helper.to_array(ref_inits[r.input[1]]).astype(np.float64)
        if q.shape != w.shape or q.dtype.kind not in "iu":
            continue
        if n.op_type == "Conv":
            if w.ndim not in (3, 4):
                continue
            rows_axis = 0
        elif n.op_type == "Gemm":
            if w.ndim != 2 or node_attr(n, "transA", 0):
                continue
            rows_axis = 0 if node_attr(n, "transB", 0) else 1
        else:
            if w.ndim != 2:
                continue
            rows_axis = 1
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) \
            if len(dq.input) > 2 and dq.input[2] in inits else np.zeros_like(scale)
        if scale.size > 1 and node_attr(dq, "axis", 1) % w.ndim != rows_axis:
            continue  # per-channel along another axis: the rows would not share a scale
        out.append({"node": n, "ref": r, "int": dq.input[0], "q": q, "w": w, "rows_axis": rows_axis,
                    "scale": scale, "zp": zp, "input": r.input[0]})
    return out


def _patches(node: Any, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[groups, D, positions] columns the layer multiplies its weight rows with."""
    import torch

    if node.op_type != "Conv":
        cols = x.reshape(-1, x.shape[-1]).T  # [K, rows]
        cols = cols[:, rng.choice(cols.shape[1], POSITIONS, replace=False)] if cols.shape[1] > POSITIONS else cols
        return cols[None]
    if x.ndim == 3:  # 1-D conv as 2-D with height 1
        x = x[:, :, None, :]
    k = list(node_attr(node, "kernel_shape", []))
    k = ([1] + k) if len(k) == 1 else k
    pads = list(node_attr(node, "pads", [0] * 2 * len(k)))
    strides = list(node_attr(node, "strides", [1] * len(k)))
    dil = list(node_attr(node, "dilations", [1] * len(k)))
    if len(pads) == 2:  # 1-D: (begin, end)
        pads, strides, dil = [0, pads[0], 0, pads[1]], [1] + strides, [1] + dil
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    # ONNX pads are (h_begin, w_begin, h_end, w_end); F.pad takes (w_begin, w_end, h_begin, h_end)
    t = torch.nn.functional.pad(t, (pads[1], pads[3], pads[0], pads[2]))
    u = torch.nn.functional.unfold(t, kernel_size=k, dilation=dil, stride=strides).numpy()  # [B, C*kh*kw, L]
    group = int(node_attr(node, "group", 1))
    u = u.transpose(1, 0, 2).reshape(u.shape[1], -1)  # [C*kh*kw, B*L]
    if u.shape[1] > POSITIONS:
        u = u[:, rng.choice(u.shape[1], POSITIONS, replace=False)]
    return u.reshape(group, -1, u.shape[1])


def _hessians(ref: Any, targets: list[dict[str, Any]], feeds: Iterable[dict[str, np.ndarray]]
              ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """``H = sum X X^T`` per target node (``[groups, D, D]``) from its FP32 input on ``feeds``, and
    the number of input positions summed into it."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(ref)
    have = {o.name for o in m.graph.output}
    tensors = sorted({t["input"] for t in targets})
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in have)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    hs: dict[str, np.ndarray] = {}
    positions: dict[str, int] = {}
    for f in feeds:
        values = dict(zip(tensors, s.run(tensors, f)))
        for t in targets:
            p = _patches(t["node"], values[t["input"]], rng).astype(np.float64)
            h = np.einsum("gdn,gen->gde", p, p)
            name = t["node"].name
            hs[name] = hs[name] + h if name in hs else h
            positions[name] = positions.get(name, 0) + p.shape[-1]
    return hs, positions


def _output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray) -> float:
    """The layer's summed squared output error ``tr((W - W_q) H (W - W_q)^T)`` on the calibration data."""
    e = w - wq
    return float(np.einsum("grd,gde,gre->", e, h, e))


def _gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, zp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Integers for rows ``w`` [G, R, D] (G groups sharing Hessian ``h`` [G, D, D]), with per-row
    ``scale``/``zp`` [G, R], rounded column by column with GPTQ's error feedback."""
    w = w.copy()
    g, _, d = w.shape
    h = h.copy()
    diag = np.einsum("gii->gi", h)
    dead = diag <= 0
    idx = np.arange(d)
    h[:, idx, idx] += DAMP * np.maximum(diag.mean(axis=1, keepdims=True), 1e-12) + dead  # dead inputs: any rounding
    try:
        u = np.linalg.cholesky(np.linalg.inv(h))  # lower L with L L^T = H^-1
    except np.linalg.LinAlgError:
        return np.clip(np.round(w / scale[..., None]) + zp[..., None], lo, hi)
    hinv = np.swapaxes(u, 1, 2)  # upper Cholesky factor of H^-1
    q = np.empty_like(w)
    for i in range(d):
        col = w[:, :, i]
        qi = np.clip(np.round(col / scale) + zp, lo, hi)
        q[:, :, i] = qi
        err = (col - (qi - zp) * scale) / hinv[:, i, i][:, None]
        w[:, :, i + 1:] -= err[:, :, None] * hinv[:, None, i, i + 1:]
    return q


ADAROUND_ITERS = 500  # Adam steps (every layer at once: their losses are independent)
ADAROUND_LR = 1e-2
ADAROUND_LAMBDA = 0.01  # weight of the rounding regulariser (AIMET's default)
ADAROUND_WARMUP = 0.2  # share of the iterations without the regulariser
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's)


@dataclass
class _Layer:
    """One layer's rounding problem: weight rows ``w`` [G, R, D] over G groups with per-row
    ``scale``/``zp`` [G, R], integers in [``lo``, ``hi``], input Hessian ``h`` [G, D, D] summed
    over ``positions`` inputs."""

    w: np.ndarray
    scale: np.ndarray
    zp: np.ndarray
    lo: float
    hi: float
    h: np.ndarray
    positions: int

    def dequantized(self, q: np.ndarray) -> np.ndarray:
        return (q - self.zp[..., None]) * self.scale[..., None]


def _adaround(layers: list[_Layer], iters: int | None = None) -> list[np.ndarray]:
    """Integers for every layer, each weight rounded up or down as AdaRound learns (see the module
    docstring): the loss is the layers' sum, so each layer's optimisation is its own."""
    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    iters = iters or ADAROUND_ITERS
    with torch.enable_grad():
        state = []
        for lay in layers:
            x = lay.w / lay.scale[..., None]
            fl = np.floor(x)
            rest = np.clip(x - fl, 1e-4, 1 - 1e-4)
            v = torch.logit(t((rest - GAMMA) / (ZETA - GAMMA))).requires_grad_(True)
            n = max(lay.positions, 1)
            # ||W x - W~ x||^2 / n = c - 2 <W H, W~> / n + <W~ H, W~> / n  (c: no gradient, left out)
            state.append({"v": v, "fl": t(fl), "sc": t(lay.scale[..., None]), "zp": t(lay.zp[..., None]),
                          "lo": lay.lo, "hi": lay.hi, "h": t(lay.h / n),
                          "a": t(np.einsum("grd,gde->gre", lay.w, lay.h) / n)})
        opt = torch.optim.Adam([st["v"] for st in state], lr=ADAROUND_LR)
        warm = int(ADAROUND_WARMUP * iters)

        def soft(st: dict[str, Any]) -> torch.Tensor:
            return (torch.sigmoid(st["v"]) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)

        for i in range(iters):
            beta = 2 + 18 * (1 - (i - warm) / max(iters - warm - 1, 1)) if i >= warm else None  # 20 -> 2
            loss = torch.zeros(())
            for st in state:
                hv = soft(st)
                wq = st["sc"] * ((st["fl"] + hv + st["zp"]).clamp(st["lo"], st["hi"]) - st["zp"])
                loss = loss + (torch.bmm(wq, st["h"]) * wq).sum() - 2 * (st["a"] * wq).sum()
                if beta is not None:
                    loss = loss + ADAROUND_LAMBDA * (1 - (2 * hv - 1).abs().pow(beta)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return [(st["fl"] + (soft(st) >= 0.5).float() + st["zp"]).clamp(st["lo"], st["hi"]).double().numpy()
                    for st in state]


def round_weights(qdq: Path, fp32: Path, feeds: list[dict[str, np.ndarray]],
                  method: Literal["gptq", "adaround"] = "gptq") -> dict[str, Any]:
    """Re-round the integer weights of ``qdq`` (rewritten in place) against the FP32 weights and
    input statistics of ``fp32`` on ``feeds``, by ``method``. Returns what was done."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    ref = onnx.load(str(fp32))
    targets = _targets(model, ref)
    if not targets:
        return {"weight_rounding": method, "weight_rounded_layers": 0}
    hs, positions = _hessians(ref, targets, feeds)
    inits = {t.name: t for t in model.graph.initializer}
    todo: list[tuple[dict[str, Any], _Layer, np.ndarray]] = []
    for t in targets:
        h, w, q0 = hs[t["node"].name], t["w"], t["q"]
        # weight rows [G, R, D] matching the Hessian's groups and column order
        rows = np.moveaxis(w, t["rows_axis"], 0).reshape(w.shape[t["rows_axis"]], -1)  # [Cout, D_total]
        groups = h.shape[0]
        r = rows.shape[0] // groups
        if rows.shape[0] % groups or rows.shape[1] != h.shape[1]:
            continue
        scale = np.broadcast_to(t["scale"].reshape(-1), (rows.shape[0],)).reshape(groups, r)
        zp = np.broadcast_to(t["zp"].reshape(-1), (rows.shape[0],)).reshape(groups, r)
        # stay inside the integer range the quantizer used (reduce_range's 7 bits included)
        lay = _Layer(rows.reshape(groups, r, -1), scale, zp, float(q0.min()), float(q0.max()), h,
                     positions[t["node"].name])
        todo.append((t, lay, np.moveaxis(q0, t["rows_axis"], 0).reshape(groups, r, -1).astype(np.float64)))
    if method == "gptq":
        new_ints = [_gptq(lay.w, lay.h, lay.scale, lay.zp, lay.lo, lay.hi) for _, lay, _ in todo]
    else:
        new_ints = _adaround([lay for _, lay, _ in todo])
    before, after = [], []
    kept_nearest = 0
    for (t, lay, old), q in zip(todo, new_ints):
        # the layer's output error on the calibration statistics, before and after
        before.append(_output_error(lay.w, lay.dequantized(old), lay.h))
        after.append(_output_error(lay.w, lay.dequantized(q), lay.h))
        if after[-1] > before[-1]:  # never worse than round-to-nearest on the statistics it was fit to
            after[-1] = before[-1]
            kept_nearest += 1
            continue
        q0 = t["q"]
        new = np.moveaxis(q.reshape(np.moveaxis(q0, t["rows_axis"], 0).shape), 0, t["rows_axis"])
        inits[t["int"]].CopyFrom(numpy_helper.from_array(new.astype(q0.dtype), t["int"]))
    onnx.save(model, str(qdq))
    total_b, total_a = sum(before), sum(after)
    return {"weight_rounding": method, "weight_rounded_layers": len(before) - kept_nearest,
            **({"weight_rounding_kept_nearest": kept_nearest} if kept_nearest else {}),
            "weight_output_error_ratio": round(total_a / total_b, 4) if total_b else 1.0}


@register
class WeightRounding(Technique):
    """``weight_rounding: gptq | adaround``: :func:`round_weights` on the quantized model, after ORT
    chose the scales and before bias correction (which reads the new weights)."""

    name = "weight_rounding"
    fields = {"weight_rounding": (Literal["nearest", "gptq", "adaround"], Field(
        "nearest", description="nearest: round each weight to its nearest integer; gptq: round each layer's weights "
        "column by column, spreading each rounding error onto the columns not yet rounded (GPTQ, with the layer's "
        "input Hessian from the calibration data); adaround: learn for each weight whether it rounds up or down "
        "(AdaRound, the same layer-output loss; slower than gptq); same scales, same INT8 kernels (engine "
        "onnxruntime, static)"))}
    phase = "weight_rounding"
    order = 30
    # a pass over the calibration data per layer: after the cheaper techniques, and all three together
    trials = (TunerTrial(70, {"weight_rounding": "gptq"}, "GPTQ weight rounding"),
              TunerTrial(80, {"equalization": True, "bias_correction": "fast", "weight_rounding": "gptq"},
                         "equalization + GPTQ + bias correction"))

    def apply(self, cfg: Any, models: Models) -> dict[str, Any]:
        assert models.feeds is not None  # calibration "required": the engine refused a run without it
        return round_weights(models.out, models.fp32, models.feeds, cfg.weight_rounding)

    def describe(self, details: dict[str, Any]) -> str | None:
        method = details.get("weight_rounding")
        if method not in ("gptq", "adaround"):
            return None
        return (f"{'GPTQ' if method == 'gptq' else 'AdaRound'} weight rounding "
                f"({details.get('weight_rounded_layers', 0)} layers, output error x"
                f"{details.get('weight_output_error_ratio', 1.0):.2f})")
