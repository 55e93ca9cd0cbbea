"""Decoder-LLM export with a KV cache: one ONNX graph that both ONNX Runtime and
OpenVINO drive token by token, for any decoder-only ``*ForCausalLM`` that transformers runs
(Llama, Qwen2/Qwen3, Gemma-3, Phi-3, Mistral, SmolLM3, ...).

The graph is the Hugging Face module's own forward, traced by ``torch.export`` and written
by torch's dynamo ONNX exporter; nothing per architecture is re-stated here. A thin wrapper
turns the cache into plain tensors: it builds transformers' ``DynamicCache`` from the
``past_*`` inputs and returns every layer's grown keys/values. transformers' own masks then
apply causality and each layer's sliding window (Gemma-3, Mistral) over the full cache.

- inputs: ``input_ids`` int64 ``[1, T]``, ``past_key_<i>`` / ``past_value_<i>`` float32
  ``[1, kv_heads, P, head_dim]`` (P = 0 for the prompt)
- outputs: ``logits`` ``[1, T, vocab]``, ``present_key_<i>`` / ``present_value_<i>``
  ``[1, kv_heads, P + T, head_dim]``

Batch 1 and no padding (the edge case: one user, one sequence): positions are
``P .. P+T-1``, computed in the graph from the cache length.

Why not transformers' ExecuTorch modules (``TorchExportableModuleForDecoderOnlyLM``): they
keep a static cache of ``max_cache_len`` inside the module as buffers mutated in place;
ONNX has no mutable state, so the cache would become fixed-size inputs and every decode
step would attend over the whole ``max_cache_len``. Why not onnxruntime-genai's model
builder: its com.microsoft ops (GroupQueryAttention, MatMulNBits) do not run on OpenVINO,
so the two runtimes would run different models.

    >>> export_decoder(llm.model, "decoder.onnx")            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ExportError, ParityError
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet

WRAPPER = "hf"  # the wrapper's attribute holding the HF model; stripped from node names


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """(past input names, present output names), key/value interleaved per layer."""
    past = [f"past_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    return past, [p.replace("past_", "present_") for p in past]


def cache_layout(config: Any) -> tuple[int, int, int]:
    """(kv heads, head dim, layers) of the exported cache, from the text config.

    >>> cache_layout(LlamaConfig(num_key_value_heads=2, hidden_size=64, num_attention_heads=4))  # doctest: +SKIP
    (2, 16, 32)
    """
    cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    try:
        heads = int(cfg.num_attention_heads)
    except AttributeError:  # state-space and other attention-free models
        raise ExportError(f"model type {getattr(config, 'model_type', '?')!r} has no attention heads: "
                          "it keeps no key/value cache and cannot be exported as a KV-cache decoder") from None
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return kv, head_dim, int(cfg.num_hidden_layers)


def empty_cache(config: Any, past_len: int = 0) -> dict[str, np.ndarray]:
    """Zero-length (or zero-filled ``past_len``) cache inputs for the exported decoder."""
    kv, hd, layers = cache_layout(config)
    past, _ = cache_names(layers)
    return {n: np.zeros((1, kv, past_len, hd), np.float32) for n in past}


def _wrapper(hf_model: Any) -> Any:
    """``forward(input_ids, *past) -> (logits, *presents)`` around the HF model."""
    import torch
    from transformers import DynamicCache

    layers = cache_layout(hf_model.config)[2]

    class DecoderWithCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            setattr(self, WRAPPER, hf_model)

        def forward(self, input_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            # no config: plain full-length layers; the model's masks apply sliding windows
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)])
            out = getattr(self, WRAPPER)(input_ids=input_ids, past_key_values=cache, use_cache=True)
            presents = [t for layer in out.past_key_values.layers for t in (layer.keys, layer.values)]
            return (out.logits, *presents)

    return DecoderWithCache().eval()


@contextmanager
def _export_ready(hf_model: Any, attention: str) -> Iterator[None]:
    """While exporting: the lm-head gets its own weight (tied, it is exported as
    ``Transpose(embedding)`` run on every call, and weight-only quantizers only see a MatMul
    whose weight is a constant), and attention is transformers' ``attention`` implementation.
    The model is restored afterwards."""
    import torch

    attn = getattr(hf_model.config, "_attn_implementation", None)
    head = hf_model.get_output_embeddings()
    switch = attn != attention and hasattr(hf_model, "set_attn_implementation")
    if switch:
        hf_model.set_attn_implementation(attention)
    if isinstance(head, torch.nn.Linear):
        copy = torch.nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        copy.weight = torch.nn.Parameter(head.weight.detach().clone())
        if head.bias is not None:
            copy.bias = torch.nn.Parameter(head.bias.detach().clone())
        hf_model.set_output_embeddings(copy)
    try:
        yield
    finally:
        if isinstance(head, torch.nn.Linear):
            hf_model.set_output_embeddings(head)
        if switch:
            hf_model.set_attn_implementation(attn)


def _probe(module: Any, config: Any) -> None:
    """Run the wrapper once in torch: a model whose cache is not one key/value tensor pair
    per layer (state-space or linear-attention layers, shared-KV layers) is refused with
    one line before the slow trace."""
    import torch

    kv, hd, layers = cache_layout(config)
    kind = getattr(config, "model_type", "?")
    past = [torch.zeros(1, kv, 2, hd) for _ in range(2 * layers)]
    try:
        with torch.inference_mode():
            out = module(torch.zeros(1, 3, dtype=torch.long), *past)
    except Exception as e:  # noqa: BLE001 - any failure here means: not a plain KV-cache decoder
        raise ExportError(f"model type {kind!r} cannot run as a KV-cache decoder: {type(e).__name__}: "
                          f"{_first_line(e)}") from None
    shapes = {tuple(t.shape) for t in out[1:]}
    if len(out) != 1 + 2 * layers or shapes != {(1, kv, 5, hd)}:
        raise ExportError(f"model type {kind!r} keeps a cache other than one key/value pair of shape "
                          f"[1, {kv}, P, {hd}] per layer (got {len(out) - 1} tensors, shapes {sorted(shapes)[:2]})")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def export_decoder(hf_model: Any, path: str | Path, *, opset: int = 18, attention: str = "eager") -> Path:
    """Export ``hf_model`` (a decoder-only ``*ForCausalLM``) as a KV-cache decoder, one file.

    ``attention``: the transformers attention implementation traced. ``eager`` (explicit
    MatMul/Softmax) decoded faster than the traced ``sdpa`` on both runtimes, with the same
    logits (SmolLM2, benchmarks/llm_export_compare.py).

    >>> export_decoder(AutoModelForCausalLM.from_config(Qwen3Config(...)), "d.onnx")  # doctest: +SKIP
    """
    import torch

    cfg = hf_model.config
    kv, hd, layers = cache_layout(cfg)
    past, present = cache_names(layers)
    # example with a non-empty past and T > 1, so neither axis is specialised to 0 or 1
    ids = torch.randint(0, int(cfg.get_text_config(decoder=True).vocab_size), (1, 5))
    cache = [torch.full((1, kv, 3, hd), 0.01) for _ in past]
    seq, ctx = torch.export.Dim("sequence", min=1), torch.export.Dim("past_sequence", min=0)
    dynamic = ({1: seq}, tuple({2: ctx} for _ in past))  # forward(input_ids, *past)
    path = Path(path)
    with _export_ready(hf_model, attention):
        module = _wrapper(hf_model)
        _probe(module, cfg)
        try:
            with torch.inference_mode(), atomic_path(path) as tmp, \
                    quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", ignore_warnings=True):
                torch.onnx.export(module, (ids, *cache), str(tmp), dynamo=True, input_names=["input_ids", *past],
                                  output_names=["logits", *present], dynamic_shapes=dynamic, external_data=False,
                                  opset_version=opset, verbose=False)
        except Exception as e:  # noqa: BLE001 - the exporter raises many types; keep the first line
            raise ExportError(f"exporting the {getattr(cfg, 'model_type', '?')!r} decoder to ONNX failed: "
                              f"{type(e).__name__}: {_first_line(e)}") from e
    _name_weight_nodes(path)
    return path


def _name_weight_nodes(path: Path) -> None:
    """Name each weight MatMul/Gather after its Hugging Face module
    (``model.layers.0.self_attn.q_proj``, ``lm_head``), so quantization settings and reports
    can address layers (the MatMul weights themselves are transposed constants); drop the exporter's per-node metadata (stack traces), which only
    adds bytes to the file."""
    import onnx

    model = onnx.load(str(path))
    prefix = WRAPPER + "."
    # initializers keep the Hugging Face state-dict names (model.embed_tokens.weight)
    renamed = {i.name: i.name[len(prefix):] for i in model.graph.initializer if i.name.startswith(prefix)}
    for init in model.graph.initializer:
        init.name = renamed.get(init.name, init.name)
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    inits = {i.name for i in model.graph.initializer}
    used: set[str] = set()
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if node.op_type in ("MatMul", "Gather") and scopes and any(i in inits for i in node.input):
            # the scopes run from the root to the op: ['', 'hf', 'hf.model', ..., 'hf.lm_head', 'linear']
            modules = [s for s in _name_scopes(scopes) if s.startswith(prefix)]
            name = modules[-1][len(prefix):] if modules else node.name
            if name not in used:
                node.name = name
                used.add(name)
        del node.metadata_props[:]
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def _name_scopes(text: str) -> list[str]:
    """The exporter's ``name_scopes`` value, a Python list literal of strings."""
    import ast

    value = ast.literal_eval(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def cached_logits(run: Any, config: Any, token_ids: np.ndarray, prefill: int) -> np.ndarray:
    """Logits ``[1, T, vocab]`` from ``run(feeds) -> [logits, *presents]``: a prefill of the
    first ``prefill`` tokens, then one cached step per remaining token (what decoding does)."""
    ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
    past, _ = cache_names(cache_layout(config)[2])
    out = run({"input_ids": ids[:, :prefill], **empty_cache(config)})
    chunks = [out[0]]
    for t in range(prefill, ids.shape[1]):
        out = run({"input_ids": ids[:, t:t + 1], **dict(zip(past, out[1:]))})
        chunks.append(out[0])
    return np.concatenate(chunks, axis=1)


def ort_cached_logits(onnx_path: Path, config: Any, ids: np.ndarray, prefill: int) -> np.ndarray:
    """:func:`cached_logits` of the decoder graph at ``onnx_path`` on ONNX Runtime (CPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return cached_logits(lambda feeds: sess.run(None, feeds), config, ids, prefill)


def logit_parity(ref: np.ndarray, got: np.ndarray, atol: float) -> tuple[dict[str, Any], float]:
    """Max abs difference and top-1 agreement of ``got`` against ``ref`` logits, ``passed``
    when the difference is within ``atol`` of the largest reference logit (at least 1) and
    top-1 agreement is >= 0.99; and that bound."""
    diff = float(np.max(np.abs(got - ref)))
    agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
    tolerance = atol * max(1.0, float(np.max(np.abs(ref))))
    return {"max_abs_diff": diff, "top1_agreement": agree, "tokens": int(ref.shape[1]),
            "passed": bool(diff <= tolerance and agree >= 0.99)}, tolerance


def check_decoder_parity(hf_model: Any, onnx_path: Path, token_ids: np.ndarray, *, atol: float = 1e-3,
                         prefill: int | None = None) -> dict[str, Any]:
    """Prefill + cached steps through ONNX Runtime against the Hugging Face model's logits
    (by default the prompt minus its last token, then one step)."""
    import torch

    ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
    with torch.inference_mode():
        ref = hf_model(torch.from_numpy(ids)).logits.float().numpy()
    got = ort_cached_logits(onnx_path, hf_model.config, ids, ids.shape[1] - 1 if prefill is None else prefill)
    res, tolerance = logit_parity(ref, got, atol)
    if not res["passed"]:
        raise ParityError(f"the exported decoder disagrees with the torch model: max abs diff "
                          f"{res['max_abs_diff']:.3g} (tolerance {tolerance:.3g}), top-1 agreement "
                          f"{res['top1_agreement']:.3f}")
    return res
