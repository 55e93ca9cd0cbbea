"""ONNX Runtime's fused decoder graph under compressor's decoder contract.

onnxruntime-genai's model builder writes a decoder with ONNX Runtime's fused kernels
(``GroupQueryAttention`` with rotary embedding inside, ``SkipSimplifiedLayerNormalization``,
a packed q/k/v ``MatMul``; compressor packs the MLP's gate/up MatMuls the same way):
SmolLM2-135M is ~340 nodes against ~2,400 for the generic
``torch.export`` graph (decoder.py), and at batch 1 a token's time goes mostly to dispatching
nodes, not to reading weights. Those ops are com.microsoft contrib ops that OpenVINO cannot
read, so this graph is for ONNX Runtime targets only; OpenVINO keeps the generic export.

The builder runs in FP32 (``-p fp32 -e cpu``): its MatMul weights are the Hugging Face
weights unchanged, so the weight-only steps (e.g. the lossless GGUF re-encoding, which finds
weights by value) work on it as on the generic graph. The graph is then given the contract
every compressor decoder has (decoder.py): inputs ``input_ids`` + ``past_key_<i>`` /
``past_value_<i>``, outputs ``logits`` + ``present_key_<i>`` / ``present_value_<i>``, in
that order. The builder's ``attention_mask`` (and ``position_ids``, where the architecture
has them) are computed in the graph from the cache length: batch 1, no padding, as for the
generic graph.

    >>> build_fused_decoder(Path("smollm2-135m"), Path("fused.onnx"))  # doctest: +SKIP
    {'builder': 'onnxruntime-genai 0.18.0 ...', 'nodes': 338, ...}
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from compressor.errors import ExportError
from compressor.utils.io import atomic_path


def _builder_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        raise ExportError("the fused ONNX Runtime decoder graph needs onnxruntime-genai's model builder",
                          hint="pip install onnxruntime-genai, or use the generic graph (ort_graph: generic)") from None


def _run_builder(hf_folder: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_folder), "-o", str(out / "model"),
           "-p", "fp32", "-e", "cpu", "-c", str(out / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    graph = out / "model" / "model.onnx"
    if proc.returncode != 0 or not graph.is_file():
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        raise ExportError(f"onnxruntime-genai's model builder cannot build {hf_folder.name}: {reason[:300]}",
                          hint="use the generic graph (ort_graph: generic), which exports any architecture "
                               "transformers runs")
    return graph


def _rename(model: Any, names: dict[str, str]) -> None:
    for node in model.graph.node:
        node.input[:] = [names.get(i, i) for i in node.input]
        node.output[:] = [names.get(o, o) for o in node.output]
    for value in (*model.graph.input, *model.graph.output):
        value.name = names.get(value.name, value.name)


def adapt_interface(model: Any) -> dict[str, Any]:
    """Rewrite the builder's graph in place to compressor's decoder contract; returns what
    was changed. ``attention_mask`` = ones of [1, past + T]; ``position_ids`` = past .. past+T-1."""
    from onnx import TensorProto, helper, numpy_helper

    import numpy as np

    g = model.graph
    inputs = {i.name: i for i in g.input}
    layers = sum(1 for n in inputs if n.startswith("past_key_values.") and n.endswith(".key"))
    if not layers or "input_ids" not in inputs:
        raise ExportError("the builder's graph has no input_ids / past_key_values inputs: not a KV-cache decoder")
    names = {f"{p}.{i}.{kv}": f"{q}_{kv}_{i}" for i in range(layers) for kv in ("key", "value")
             for p, q in (("past_key_values", "past"), ("present", "present"))}
    _rename(model, names)
    computed = [n for n in ("attention_mask", "position_ids") if n in inputs]
    unknown = set(inputs) - {"input_ids", "attention_mask", "position_ids"} - {k for k in names if k in inputs}
    if unknown:
        raise ExportError(f"the builder's graph has inputs compressor cannot feed: {sorted(unknown)}")
    one = numpy_helper.from_array(np.array([1], np.int64), "adapt.one")
    two = numpy_helper.from_array(np.array([2], np.int64), "adapt.two")
    g.initializer.extend([one, two])
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["adapt.ids_shape"]),
        helper.make_node("Gather", ["adapt.ids_shape", "adapt.one"], ["adapt.new"], axis=0),
        helper.make_node("Shape", ["past_key_0"], ["adapt.past_shape"]),
        helper.make_node("Gather", ["adapt.past_shape", "adapt.two"], ["adapt.past"], axis=0),
        helper.make_node("Add", ["adapt.past", "adapt.new"], ["adapt.total"]),
    ]
    if "attention_mask" in computed:
        nodes += [helper.make_node("Concat", ["adapt.one", "adapt.total"], ["adapt.mask_shape"], axis=0),
                  helper.make_node("ConstantOfShape", ["adapt.mask_shape"], ["attention_mask"],
                                   value=helper.make_tensor("v", TensorProto.INT64, [1], [1]))]
    if "position_ids" in computed:
        nodes += [helper.make_node("Squeeze", ["adapt.past"], ["adapt.start"]),
                  helper.make_node("Squeeze", ["adapt.total"], ["adapt.end"]),
                  helper.make_node("Squeeze", ["adapt.one"], ["adapt.step"]),
                  helper.make_node("Range", ["adapt.start", "adapt.end", "adapt.step"], ["adapt.positions"]),
                  helper.make_node("Unsqueeze", ["adapt.positions", "adapt.zero"], ["position_ids"])]
        g.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "adapt.zero"))
    old = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old)
    keep = [inputs["input_ids"]] + [next(i for i in g.input if i.name == f"past_{kv}_{i_}")
                                    for i_ in range(layers) for kv in ("key", "value")]
    del g.input[:]
    g.input.extend(keep)
    outputs = {o.name: o for o in g.output}
    order = ["logits"] + [f"present_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    if set(order) != set(outputs):
        raise ExportError(f"the builder's graph outputs {sorted(outputs)[:4]}..., not logits + present.<i>.key/value")
    del g.output[:]
    g.output.extend(outputs[n] for n in order)
    return {"layers": layers, "computed_inputs": computed}


def pack_shared_matmuls(model: Any) -> int:
    """MatMuls that read the same input with constant weights of the same K (an MLP's gate
    and up projections) become one MatMul over the weights side by side and a Split: exact
    (each output column is its own dot product), one weight-only kernel call instead of
    several. Returns how many groups were packed."""
    from collections import defaultdict

    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    groups: dict[str, list[Any]] = defaultdict(list)
    for n in g.node:
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
            groups[n.input[0]].append(n)
    uses = defaultdict(int)
    for n in g.node:
        for i in n.input:
            uses[i] += 1
    packed, dropped = 0, set()
    for x, nodes in groups.items():
        if len(nodes) < 2 or len({tuple(inits[n.input[1]].dims[:1]) for n in nodes}) != 1 \
                or any(uses[n.input[1]] > 1 for n in nodes):  # a weight read elsewhere too stays
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
        name = f"{nodes[0].name}.packed"
        g.initializer.extend([numpy_helper.from_array(np.concatenate(weights, axis=1), f"{name}.weight"),
                              numpy_helper.from_array(np.array([w.shape[1] for w in weights], np.int64), f"{name}.split")])
        at = list(g.node).index(nodes[0])
        for n in nodes:
            dropped.add(n.input[1])
            g.node.remove(n)
        g.node.insert(at, helper.make_node("Split", [f"{name}.out", f"{name}.split"], [n.output[0] for n in nodes],
                                           name=f"{name}.split", axis=-1))
        g.node.insert(at, helper.make_node("MatMul", [x, f"{name}.weight"], [f"{name}.out"], name=name))
        packed += 1
    keep = [i for i in g.initializer if i.name not in dropped]
    del g.initializer[:]
    g.initializer.extend(keep)
    return packed


def build_fused_decoder(hf_folder: Path, dst: Path) -> dict[str, Any]:
    """``dst``: the builder's FP32 graph of the Hugging Face model in ``hf_folder`` with
    compressor's decoder interface (one file); returns details for the report."""
    import collections

    import onnx

    version = _builder_version()
    with tempfile.TemporaryDirectory(prefix="compressor-genai-") as tmp:
        graph = _run_builder(Path(hf_folder), Path(tmp))
        model = onnx.load(str(graph))  # with its external weights
    _check_windows(model, Path(hf_folder))
    changed = adapt_interface(model)
    changed["packed_matmuls"] = pack_shared_matmuls(model)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    with atomic_path(dst) as tmp_path:
        onnx.save(model, str(tmp_path))
    return {"builder": f"onnxruntime-genai {version} model builder (-p fp32 -e cpu), interface adapted",
            "nodes": len(model.graph.node), "fused_ops": {k: v for k, v in ops.items() if k in FUSED},
            **changed}


def _check_windows(model: Any, hf_folder: Path) -> None:
    """Refuse a graph whose attention ignores the model's sliding window: onnxruntime-genai
    0.18 writes ``local_window_size = -1`` (full attention) for a Mistral with a window, and a
    short parity check cannot see that (it differs only past the window)."""
    from onnx import helper
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(hf_folder, local_files_only=True, trust_remote_code=False)
    cfg = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)
    if window is None or (getattr(cfg, "use_sliding_window", True) is False and not types):
        return
    sliding = [t == "sliding_attention" for t in types] if types else [True] * int(cfg.num_hidden_layers)
    attn = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    got = [next((helper.get_attribute_value(a) for a in n.attribute if a.name == "local_window_size"), -1) for n in attn]
    wrong = [i for i, (s, w) in enumerate(zip(sliding, got)) if s and w != window]
    if len(attn) != len(sliding) or wrong:
        raise ExportError(f"the builder's attention does not keep the model's sliding window of {window} tokens "
                          f"(layers {wrong[:4] or 'unknown'}: window {got[wrong[0]] if wrong else '?'})",
                          hint="use the generic graph (ort_graph: generic), which keeps each layer's window")


FUSED = ("GroupQueryAttention", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "RotaryEmbedding",
         "MultiHeadAttention", "SkipLayerNormalization")


def compare_decoders(reference: Path, candidate: Path, config: Any, token_ids: Any, *, atol: float = 1e-3) -> dict[str, Any]:
    """Logits of two KV-cache decoder graphs on ONNX Runtime over ``token_ids`` (a prefill of
    all but 8 tokens, then 8 cached steps): max abs difference and top-1 agreement; ``passed``
    when the difference is within ``atol`` (relative to the largest logit, at least 1)."""
    import numpy as np

    from compressor.export.decoder import logit_parity, ort_cached_logits

    ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
    prefill = max(1, ids.shape[1] - 8)
    ref, got = (ort_cached_logits(path, config, ids, prefill) for path in (reference, candidate))
    return logit_parity(ref, got, atol)[0]
