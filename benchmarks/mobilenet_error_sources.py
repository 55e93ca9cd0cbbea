"""Where MobileNetV2's INT8 error comes from: probes by surgery on the QDQ model (ONNX Runtime).

    python benchmarks/mobilenet_error_sources.py            # about 6 minutes on 2 cores
    python benchmarks/mobilenet_error_sources.py --groups   # part 4 only, about 3 minutes

1. split: weights alone INT8 (every activation Q/DQ bypassed) and activations alone INT8
   (every weight DequantizeLinear replaced by the FP32 weight), against the full INT8 model;
2. leave-one-out: each quantized node's activation inputs read the FP32 tensor instead of its
   Q/DQ (one node at a time), so a node that dominates the error shows up;
3. output-scored ranges: each activation tensor's range scaled x0.85 or x1.2 (biases rescaled
   with it), kept when the output KL on the calibration crops improves; scored on held-out crops;
4. by tensor group (``--groups``), on the shipped settings (equalization, GPTQ rounding, bias
   correction) without and with ``activation_smoothing: 0.6``: the activation inputs of each group
   read FP32 at once: the residual streams (tensors written by a projection Conv or an Add), the
   ReLU6 outputs read by depthwise Convs, those read by plain Convs, and the graph input.

Base: the recipe's quantize settings (moving-average min/max at batch 1, per-channel, classifier
FP32) + cross-layer equalization, no bias correction (the split and leave-one-out), and the
shipped recipe's settings for part 3. Metric: top-1 agreement and mean softmax KL against FP32.
ORT folds a ReLU6 into its output's QuantizeLinear range: bypassing that Q/DQ re-inserts the
Clip. Writes benchmarks/out/mobilenet_error_sources.json; summary in
benchmarks/results/mobilenet_techniques.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from _common import ROOT  # noqa: E402 - puts the checkout on sys.path

EVAL, CALIB = 600, 64


def _session(model):
    import onnxruntime as ort

    from compressor.utils.ort_sessions import KEEP_FLOAT_NODES

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.log_severity_level = 2, 3
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    # float weights next to DequantizeLinear stay float (ORT would re-quantize them per tensor)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"], disabled_optimizers=list(KEEP_FLOAT_NODES))


def _run(model, x: np.ndarray) -> np.ndarray:
    s = _session(model)
    return np.concatenate([s.run(None, {"input": x[i:i + 32]})[0] for i in range(0, len(x), 32)])


def _score(model, x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    from _common import kl

    out = _run(model, x)
    return {"agreement": round(float(np.mean(out.argmax(1) == ref.argmax(1))), 4), "kl": round(kl(ref, out), 5)}


class Surgery:
    """A QDQ model and its FP32 source (same tensor and node names), for bypassing Q/DQ pairs."""

    def __init__(self, qdq: Path, fp32: Path):
        import onnx

        self.model = onnx.load(str(qdq))
        self.fp32 = onnx.load(str(fp32))
        g = self.model.graph
        self.inits = {t.name for t in g.initializer}
        self.prod = {o: n for n in g.node for o in n.output}
        self.fprod = {o: n for n in self.fp32.graph.node for o in n.output}
        self.finits = {t.name: t for t in self.fp32.graph.initializer}

    def activations_fp32(self, nodes: set[str] | None = None):
        """Copy whose ``nodes`` (all when None) read their activation inputs unquantized."""
        import onnx
        from onnx import numpy_helper

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        m.graph.initializer.extend([numpy_helper.from_array(np.array(0, np.float32), "probe/lo"),
                                    numpy_helper.from_array(np.array(6, np.float32), "probe/hi")])
        for node in list(m.graph.node):
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (nodes is not None and node.name not in nodes):
                continue
            for i, name in enumerate(node.input):
                dq = self.prod.get(name)
                if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in self.inits:
                    continue
                q = self.prod.get(dq.input[0])
                if q is None or q.op_type != "QuantizeLinear":
                    continue
                t = q.input[0]
                fp = self.fprod.get(t)
                if fp is not None and fp.op_type == "Clip" and self.prod[t].op_type != "Clip":
                    clip = onnx.helper.make_node("Clip", [t, "probe/lo", "probe/hi"], [f"{t}/clip/{node.name}"],
                                                 name=f"{node.name}/probe-clip")
                    m.graph.node.insert(list(m.graph.node).index(node), clip)
                    t = clip.output[0]
                node.input[i] = t
        return m

    def weights_fp32(self):
        """Copy whose Conv/Gemm weights are the FP32 model's (activations still quantized)."""
        import onnx

        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        have = set(self.inits)
        for n in m.graph.node:
            if n.op_type not in ("Conv", "Gemm") or len(n.input) < 2:
                continue
            dq = self.prod.get(n.input[1])
            w = n.input[1].replace("_DequantizeLinear_Output", "")
            if dq is not None and dq.op_type == "DequantizeLinear" and w in self.finits:
                if w not in have:
                    m.graph.initializer.append(self.finits[w])
                    have.add(w)
                n.input[1] = w
        return m


def _quantize(src: Path, dst: Path, calib: np.ndarray, **extra) -> None:
    from compressor.data.dataset import Dataset
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx

    cfg = QuantizeConfig(per_channel=True, moving_average=True, calibration_batch_size=1,
                         nodes_to_exclude=["node_linear"], **extra)
    quantize_onnx(src, dst, cfg, Dataset({"input": calib}), skip_preprocess=True)


def output_scored_ranges(qdq: Path, calib: np.ndarray, ref_calib: np.ndarray) -> tuple[object, int]:
    """Greedy per-tensor range scaling (x0.85, x1.2) scored by output KL on the calibration crops."""
    import onnx
    from onnx import numpy_helper

    from _common import kl

    m = onnx.load(str(qdq))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def scale(name: str, f: float, dq_outs: list[str]) -> None:
        s = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array((s * f).astype(s.dtype), name))
        for d in dq_outs:  # a consumer's INT32 bias is quantized with its input's scale
            for c in cons.get(d, []):
                if c.op_type in ("Conv", "Gemm") and len(c.input) > 2 and c.input[0] == d and c.input[2] in prod:
                    bdq = prod[c.input[2]]
                    b, bs = numpy_helper.to_array(inits[bdq.input[0]]), numpy_helper.to_array(inits[bdq.input[1]])
                    inits[bdq.input[1]].CopyFrom(numpy_helper.from_array((bs * f).astype(bs.dtype), bdq.input[1]))
                    inits[bdq.input[0]].CopyFrom(numpy_helper.from_array(
                        np.round(b.astype(np.float64) / f).astype(np.int32), bdq.input[0]))

    cur, changed = kl(ref_calib, _run(m, calib)), 0
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] != "input"]:
        dqs = [c for c in cons.get(q.output[0], []) if c.op_type == "DequantizeLinear"]
        if not dqs or dqs[0].input[1] != q.input[1]:
            continue
        outs, best = [d.output[0] for d in dqs], 1.0
        for f in (0.85, 1.2):
            scale(q.input[1], f, outs)
            k = kl(ref_calib, _run(m, calib))
            scale(q.input[1], 1.0 / f, outs)
            if k < cur * 0.995:
                cur, best = k, f
        if best != 1.0:
            scale(q.input[1], best, outs)
            changed += 1
    return m, changed


def groups(surgery: Surgery, qdq: Path) -> dict[str, set[str]]:
    """Quantized nodes by the kind of activation they read (see the module docstring, part 4)."""
    from compressor.steps.quantize.tuning import quantized_nodes
    from compressor.techniques._graph import node_attr

    out: dict[str, set[str]] = {"residual streams": set(), "ReLU6 -> depthwise": set(), "ReLU6 -> plain Conv": set(),
                                "graph input": set()}
    quantized = set(quantized_nodes(qdq))
    for n in surgery.model.graph.node:
        if n.name not in quantized:
            continue
        for name in n.input:
            dq = surgery.prod.get(name)
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in surgery.inits:
                continue
            src = surgery.fprod.get(surgery.prod[dq.input[0]].input[0])
            kind = ("graph input" if src is None else "residual streams" if src.op_type != "Clip" else
                    "ReLU6 -> depthwise" if node_attr(n, "group", 1) > 1 else "ReLU6 -> plain Conv")
            out[kind].add(n.name)
    return out


def group_split(out: Path, eq: Path, calib: np.ndarray, evals: np.ndarray, ref: np.ndarray) -> dict:
    """Part 4: the error by tensor group, without and with activation smoothing."""
    res = {}
    from compressor.data.dataset import Dataset
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import rewrite_fp32

    smoothed = out / "eq-smoothed.onnx"  # the FP32 model the second QDQ graph is made from (the surgery reads it)
    rewrite_fp32(eq, smoothed, QuantizeConfig(activation_smoothing=0.6), Dataset({"input": calib}))
    for label, src in (("shipped", eq), ("shipped + activation_smoothing 0.6", smoothed)):
        q = out / f"groups-{len(res)}.onnx"
        _quantize(src, q, calib, weight_rounding="gptq", bias_correction="fast")
        surgery = Surgery(q, src)
        row = {"full int8": _score(q, evals, ref), "all activations fp32": _score(surgery.activations_fp32(), evals, ref)}
        for kind, nodes in groups(surgery, q).items():
            row[f"{kind} fp32 ({len(nodes)} nodes)"] = _score(surgery.activations_fp32(nodes), evals, ref)
        res[label] = row
        print(label, json.dumps(row), flush=True)
    return res


def main() -> None:
    import argparse

    import mobilenet_v2 as mn

    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", action="store_true", help="part 4 only")
    args = ap.parse_args()

    from compressor.data.dataset import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import preprocess, rewrite_fp32
    from compressor.steps.quantize.tuning import quantized_nodes

    out = ROOT / "benchmarks" / "out" / "mobilenet_error_sources"
    out.mkdir(parents=True, exist_ok=True)
    calib, evals = mn.sample_images(CALIB, seed=1), mn.sample_images(EVAL, seed=2)
    fp32 = export_onnx(mn.build(pretrained=True).eval(), out / "fp32.onnx",
                       [{"name": "input", "shape": [2, 3, 224, 224], "dtype": "float32", "dynamic": {}}])
    pre, eq = out / "pre.onnx", out / "eq.onnx"
    preprocess(fp32, pre)
    rewrite_fp32(pre, eq, QuantizeConfig(equalization=True, moving_average=True, calibration_batch_size=1),
                 Dataset({"input": calib}))
    ref, ref_calib = _run(fp32, evals), _run(fp32, calib)
    res: dict = {"date": time.strftime("%Y-%m-%d"), "eval_crops": EVAL, "calibration_crops": CALIB}
    if args.groups:
        res["groups"] = group_split(out, eq, calib, evals, ref)
        (ROOT / "benchmarks" / "out" / "mobilenet_error_groups.json").write_text(json.dumps(res, indent=2))
        return

    base = out / "int8.onnx"
    _quantize(eq, base, calib)
    surgery = Surgery(base, eq)
    res["split"] = {"full int8": _score(base, evals, ref),
                    "weights int8 only": _score(surgery.activations_fp32(), evals, ref),
                    "activations int8 only": _score(surgery.weights_fp32(), evals, ref)}
    print("split", json.dumps(res["split"]), flush=True)

    loo = []
    for node in quantized_nodes(base):
        loo.append({"node": node, **_score(surgery.activations_fp32({node}), evals, ref)})
    loo.sort(key=lambda r: r["kl"])
    res["leave_one_out"] = loo
    print("leave-one-out, best 5:", json.dumps(loo[:5]), flush=True)

    shipped = out / "int8-shipped.onnx"
    _quantize(eq, shipped, calib, weight_rounding="gptq", bias_correction="fast")
    t0 = time.perf_counter()
    refined, changed = output_scored_ranges(shipped, calib, ref_calib)
    res["output_scored_ranges"] = {"before": _score(shipped, evals, ref), "after": _score(refined, evals, ref),
                                   "tensors_changed": changed, "seconds": round(time.perf_counter() - t0, 1)}
    print("output-scored ranges", json.dumps(res["output_scored_ranges"]), flush=True)
    (ROOT / "benchmarks" / "out" / "mobilenet_error_sources.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
