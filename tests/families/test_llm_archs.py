"""The generic decoder export on a tiny random model of each architecture the docs list
(built here from a config: no download): logits over 32 tokens through the KV cache
(a 16-token prefill, then 16 one-token steps) on ONNX Runtime and OpenVINO against
transformers' own forward over the whole sequence; architectures transformers cannot run
as a KV-cache decoder get one error line."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.errors import ExportError, ModelLoadError

TOKENS, PREFILL = 32, 16
BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
# per architecture: its config class and what makes it differ from Llama; sliding windows
# of 8 tokens so that the 32-token check crosses them
ARCHS = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),  # q/k/v biases
    "qwen3": ("Qwen3Config", {"head_dim": 32}),  # q/k RMSNorm, head_dim != hidden / heads
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 16, "num_hidden_layers": 3, "sliding_window": 8,
                                         "layer_types": ["sliding_attention", "sliding_attention", "full_attention"]}),
    "phi3": ("Phi3Config", {}),  # fused qkv and gate_up projections
    "mistral": ("MistralConfig", {"sliding_window": 8}),
    "smollm3": ("SmolLM3Config", {"no_rope_layers": [1, 0]}),  # a layer without rotary embedding
}


def _tiny(arch: str):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    cls, extra = ARCHS[arch]
    torch.manual_seed(0)
    cfg = getattr(transformers, cls)(**{**BASE, **extra})
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():  # random weights of realistic size: logits of order 1, not 1e-2
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return model


def _runtimes(path):
    """name -> run(feeds) -> outputs, for ONNX Runtime and OpenVINO (FP32)."""
    from compressor.targets.onnxruntime_cpu import OrtSession
    from compressor.targets.openvino_cpu import OpenVinoSession, write_ir

    ort = OrtSession(path, 1, {})
    ov = OpenVinoSession(write_ir(path, path.with_suffix(".xml"))[0], threads=1, precision_hint="f32")
    return {"onnxruntime": ort.run, "openvino": ov.run}


# llama runs in the fast suite; each of the others takes ~10 s on a quiet 2-core machine
# (export + OpenVINO conversion), so they run with the slow tests (CI runs both)
@pytest.mark.parametrize("arch", [a if a == "llama" else pytest.param(a, marks=pytest.mark.slow) for a in sorted(ARCHS)])
def test_architecture_exports_and_matches_transformers_with_cache(arch, tmp_path):
    import torch

    from compressor.export.decoder import cache_layout, cached_logits, export_decoder

    model = _tiny(arch)
    path = export_decoder(model, tmp_path / f"{arch}.onnx")
    ids = np.random.default_rng(0).integers(3, BASE["vocab_size"], TOKENS)
    with torch.inference_mode():
        ref = model(torch.from_numpy(ids[None])).logits.numpy()
    assert float(np.abs(ref).max()) > 0.5  # a meaningful scale for the tolerance below
    kv, hd, layers = cache_layout(model.config)
    for runtime, run in _runtimes(path).items():
        got = cached_logits(run, model.config, ids, PREFILL)
        err = float(np.abs(got - ref).max())
        assert got.shape == ref.shape and err < 1e-4, f"{arch} on {runtime}: max abs logit error {err:.2e}"
        print(f"{arch} {runtime}: max abs logit error {err:.2e} over {TOKENS} tokens")
    # the cache grows by one position per step, full length on every layer (sliding ones too)
    out = _runtimes(path)["onnxruntime"]({"input_ids": ids[None, :5].astype(np.int64),
                                          **{f"past_{kv_}_{i}": np.zeros((1, kv, 0, hd), np.float32)
                                             for i in range(layers) for kv_ in ("key", "value")}})
    assert len(out) == 1 + 2 * layers and {o.shape for o in out[1:]} == {(1, kv, 5, hd)}


def test_weight_nodes_carry_the_hugging_face_module_names(tmp_path):
    """Weight-only steps address layers by name: q/k/v/o, MLP and the untied lm-head."""
    import onnx

    from compressor.export.decoder import export_decoder

    model = _tiny("phi3")
    head = model.get_output_embeddings()
    path = export_decoder(model, tmp_path / "d.onnx")
    g = onnx.load(str(path)).graph
    inits = {i.name for i in g.initializer}
    names = sorted(n.name for n in g.node if n.op_type == "MatMul" and n.input[1] in inits)
    assert names == sorted(["lm_head"] + [f"model.layers.{i}.{m}" for i in range(2)
                                          for m in ("self_attn.qkv_proj", "self_attn.o_proj",
                                                    "mlp.gate_up_proj", "mlp.down_proj")])
    assert "model.embed_tokens.weight" in inits
    # the export gave the head its own weight only for the trace: the model gets its own back
    assert model.get_output_embeddings() is head


def test_state_space_model_is_refused_in_one_line(tmp_path):
    """Mamba runs in transformers but keeps a convolution/SSM state, not a key/value cache."""
    import torch
    from transformers import MambaConfig, MambaForCausalLM

    from compressor.export.decoder import export_decoder

    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=64, hidden_size=32, state_size=4, num_hidden_layers=2)).eval()
    with pytest.raises(ExportError, match="model type 'mamba'") as e:
        export_decoder(model, tmp_path / "m.onnx")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "m.onnx").exists()


def test_encoder_decoder_folder_is_refused_at_load(tmp_path):
    from transformers import T5Config

    from compressor.models.llm import load_hf_folder

    T5Config(vocab_size=32, d_model=16, num_layers=1, num_heads=2, d_ff=16).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="model type 't5' is not a decoder-only causal LM"):
        load_hf_folder(tmp_path)
