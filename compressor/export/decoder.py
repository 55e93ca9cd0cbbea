"""Decoder-LLM export with a KV cache: one ONNX graph that both ONNX Runtime and
OpenVINO drive token by token.

Why not onnxruntime-genai's model builder: its graphs use com.microsoft ops
(GroupQueryAttention, MatMulNBits, SkipSimplifiedLayerNormalization) that OpenVINO
cannot read, so the two runtimes would run different models. Why not the Hugging Face
module itself: its cache objects and mask builders change from release to release and
do not trace into a stable graph. :class:`DecoderWithCache` re-states the Llama forward
(RMSNorm, rotary embedding, grouped-query attention, SwiGLU) over the Hugging Face
module's own parameters and rotary frequencies, with the cache as plain tensors:

- inputs: ``input_ids`` int64 ``[1, T]``, ``past_key_<i>`` / ``past_value_<i>`` float32
  ``[1, kv_heads, P, head_dim]`` (P = 0 for the prompt)
- outputs: ``logits`` ``[1, T, vocab]``, ``present_key_<i>`` / ``present_value_<i>``
  ``[1, kv_heads, P + T, head_dim]``

Batch 1 and no padding (the edge case: one user, one sequence), so positions are
``P .. P+T-1`` and the mask is causal, both computed in the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import ExportError, ParityError
from compressor.utils.io import atomic_path
from compressor.utils.quiet import quiet


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """(past input names, present output names), key/value interleaved per layer."""
    past = [f"past_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    return past, [p.replace("past_", "present_") for p in past]


def _decoder_module(hf_model: Any) -> Any:
    import torch
    from torch import nn

    cfg = hf_model.config
    inner = hf_model.model

    class DecoderWithCache(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            # an untied copy: a tied head is exported as Transpose(embedding) run on every call,
            # and weight-only quantizers only see a MatMul whose weight is a constant
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
            self.lm_head.weight = nn.Parameter(hf_model.lm_head.weight.detach().clone())
            self.heads = cfg.num_attention_heads
            self.kv_heads = cfg.num_key_value_heads
            self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            self.eps = cfg.rms_norm_eps
            rot = inner.rotary_emb
            self.register_buffer("inv_freq", rot.inv_freq.detach().float().clone(), persistent=False)
            self.rope_scale = float(getattr(rot, "attention_scaling", 1.0))

        def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

        @staticmethod
        def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            half = x.shape[-1] // 2
            rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
            return x * cos + rotated * sin

        def forward(self, input_ids: torch.Tensor, *past: torch.Tensor):
            t = input_ids.shape[1]
            p = past[0].shape[2]
            pos = torch.arange(t, dtype=torch.float32) + p  # positions P .. P+T-1
            freqs = pos[:, None] * self.inv_freq[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos() * self.rope_scale, emb.sin() * self.rope_scale
            k_pos = torch.arange(t + p, dtype=torch.float32)
            # causal: a query at position q sees keys at positions <= q
            blocked = k_pos[None, :] > pos[:, None]
            h = self.inner.embed_tokens(input_ids)
            presents = []
            for i, layer in enumerate(self.inner.layers):
                a = layer.self_attn
                x = self._norm(h, layer.input_layernorm.weight)
                q = a.q_proj(x).view(1, t, self.heads, self.head_dim).transpose(1, 2)
                k = a.k_proj(x).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
                v = a.v_proj(x).view(1, t, self.kv_heads, self.head_dim).transpose(1, 2)
                q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
                k = torch.cat((past[2 * i], k), dim=2)
                v = torch.cat((past[2 * i + 1], v), dim=2)
                presents += [k, v]
                rep = self.heads // self.kv_heads
                kr = k.repeat_interleave(rep, dim=1) if rep > 1 else k
                vr = v.repeat_interleave(rep, dim=1) if rep > 1 else v
                scores = torch.matmul(q, kr.transpose(2, 3)) * (self.head_dim ** -0.5)
                scores = scores.masked_fill(blocked, float("-inf"))
                attn = torch.matmul(torch.softmax(scores, dim=-1), vr)
                h = h + a.o_proj(attn.transpose(1, 2).reshape(1, t, self.heads * self.head_dim))
                m = layer.mlp
                x = self._norm(h, layer.post_attention_layernorm.weight)
                h = h + m.down_proj(torch.nn.functional.silu(m.gate_proj(x)) * m.up_proj(x))
            logits = self.lm_head(self._norm(h, self.inner.norm.weight))
            return (logits, *presents)

    return DecoderWithCache().eval()


def empty_cache(config: Any, past_len: int = 0) -> dict[str, np.ndarray]:
    """Zero-length (or zero-filled ``past_len``) cache inputs for the exported decoder."""
    kv = config.num_key_value_heads
    hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    past, _ = cache_names(config.num_hidden_layers)
    return {n: np.zeros((1, kv, past_len, hd), np.float32) for n in past}


def export_decoder(hf_model: Any, path: str | Path, *, opset: int = 18) -> Path:
    """Export ``hf_model`` (a Llama ``*ForCausalLM``) as a KV-cache decoder, single file."""
    import torch

    module = _decoder_module(hf_model)
    cfg = hf_model.config
    past, present = cache_names(cfg.num_hidden_layers)
    # example with a non-empty past and T > 1, so neither axis is specialised to 0 or 1
    ids = torch.randint(0, cfg.vocab_size, (1, 5))
    cache = [torch.from_numpy(a) + 0.01 for a in empty_cache(cfg, 3).values()]
    seq, ctx = torch.export.Dim("sequence", min=1), torch.export.Dim("past_sequence", min=0)
    dynamic = ({1: seq}, tuple({2: ctx} for _ in past))  # forward(input_ids, *past)
    path = Path(path)
    try:
        with torch.inference_mode(), atomic_path(path) as tmp, \
                quiet("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", ignore_warnings=True):
            torch.onnx.export(module, (ids, *cache), str(tmp), dynamo=True, input_names=["input_ids", *past],
                              output_names=["logits", *present], dynamic_shapes=dynamic, external_data=False,
                              opset_version=opset, verbose=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"exporting the decoder to ONNX failed: {type(e).__name__}: {first}") from e
    _name_weight_nodes(path)
    return path


def _name_weight_nodes(path: Path) -> None:
    """Name each weight MatMul/Gather after its module (``inner.layers.0.self_attn.q_proj``,
    ``lm_head``), so quantization settings and reports can address layers; drop the
    exporter's per-node metadata (stack traces), which only adds bytes to the file."""
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    used: set[str] = set()
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if node.op_type in ("MatMul", "Gather") and scopes and any(i in inits for i in node.input):
            module = [s for s in _name_scopes(scopes) if s][:1]
            name = module[0] if module else node.name
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


def check_decoder_parity(hf_model: Any, onnx_path: Path, token_ids: np.ndarray, *, atol: float = 1e-3) -> dict[str, Any]:
    """Prompt + one cached step through ONNX Runtime against the Hugging Face model's logits."""
    import onnxruntime as ort
    import torch

    ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
    with torch.inference_mode():
        ref = hf_model(torch.from_numpy(ids)).logits.float().numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    past, _ = cache_names(hf_model.config.num_hidden_layers)
    feeds = {"input_ids": ids[:, :-1], **empty_cache(hf_model.config)}
    out = sess.run(None, feeds)
    step = sess.run(None, {"input_ids": ids[:, -1:], **dict(zip(past, out[1:]))})
    got = np.concatenate([out[0], step[0]], axis=1)
    diff = float(np.max(np.abs(got - ref)))
    agree = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
    scale = max(1.0, float(np.max(np.abs(ref))))
    res = {"max_abs_diff": diff, "top1_agreement": agree, "tokens": int(ids.shape[1]),
           "passed": bool(diff <= atol * scale and agree >= 0.99)}
    if not res["passed"]:
        raise ParityError(f"the exported decoder disagrees with the torch model: max abs diff {diff:.3g} "
                          f"(tolerance {atol * scale:.3g}), top-1 agreement {agree:.3f}")
    return res
