"""ONNX Runtime's fused decoder graph (onnxruntime-genai's model builder, ``ort_graph``) on
tiny random models built here (no download): compressor's decoder interface, logits through
the KV cache against transformers, a clear error where the builder cannot build, and the
``auto`` fallback when the builder's graph computes something else."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from compressor.errors import ExportError, ParityError
from tests.families.test_llm_archs import BASE, PREFILL, TOKENS, _tiny

# head_dim 32 and an MLP wider than the hidden size: with head_dim 16, or an intermediate size
# below the hidden size, onnxruntime-genai 0.18's graph computes other logits (the fallback test)
WIDE = {"hidden_size": 128, "intermediate_size": 256}


def _folder(arch: str, path: Path, **config) -> tuple[object, Path]:
    """A tiny random ``arch`` model saved with a word-level tokenizer (the builder copies one)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    old = dict(BASE)
    BASE.update(config)
    try:
        model = _tiny(arch)
    finally:
        BASE.clear()
        BASE.update(old)
    model.save_pretrained(path)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(BASE["vocab_size"])}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w1", eos_token="w2", pad_token="w0").save_pretrained(path)
    return model, path


def _ids() -> np.ndarray:
    return np.random.default_rng(0).integers(3, BASE["vocab_size"], TOKENS)


# llama runs in the fast suite (~6 s: the builder is a subprocess importing torch); the others slow
@pytest.mark.parametrize("arch", ["llama", *(pytest.param(a, marks=pytest.mark.slow) for a in ("qwen2", "qwen3"))])
def test_fused_graph_has_the_decoder_interface_and_matches_transformers(arch, tmp_path):
    import onnx
    import torch

    from compressor.export.decoder import cache_layout, cache_names, cached_logits
    from compressor.export.genai_graph import build_fused_decoder
    from compressor.targets.onnxruntime_cpu import OrtSession

    model, folder = _folder(arch, tmp_path / arch, **WIDE)
    info = build_fused_decoder(folder, tmp_path / "fused.onnx")
    layers = cache_layout(model.config)[2]
    past, present = cache_names(layers)
    graph = onnx.load(str(tmp_path / "fused.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", *past]  # no attention_mask: computed inside
    assert [o.name for o in graph.output] == ["logits", *present]
    assert info["fused_ops"]["GroupQueryAttention"] == layers and info["computed_inputs"] == ["attention_mask"]
    assert info["packed_matmuls"] == layers  # each layer's gate/up MatMuls, one MatMul + Split
    ids = _ids()
    with torch.inference_mode():
        ref = model(torch.from_numpy(ids[None])).logits.numpy()
    got = cached_logits(OrtSession(tmp_path / "fused.onnx", 1, {}).run, model.config, ids, PREFILL)
    err = float(np.abs(got - ref).max())
    assert float(np.abs(ref).max()) > 0.5 and err < 1e-4, f"{arch}: max abs logit error {err:.2e}"
    print(f"{arch}: fused graph, {info['nodes']} nodes, max abs logit error {err:.2e} over {TOKENS} tokens")


def test_an_architecture_the_builder_cannot_build_is_one_clear_error(tmp_path):
    from compressor.export.genai_graph import build_fused_decoder

    _, folder = _folder("smollm3", tmp_path / "smollm3", **WIDE)  # onnxruntime-genai 0.18 cannot build it
    with pytest.raises(ExportError, match="model builder cannot build smollm3") as err:
        build_fused_decoder(folder, tmp_path / "fused.onnx")
    assert "\n" not in str(err.value) and "ort_graph: generic" in str(err.value)
    assert not (tmp_path / "fused.onnx").exists()


@pytest.mark.slow
def test_a_sliding_window_the_builder_drops_is_refused(tmp_path):
    """Mistral with an 8-token window: onnxruntime-genai 0.18 writes full attention, which
    differs from transformers only past the window, so it is refused before any parity check."""
    from compressor.export.genai_graph import build_fused_decoder

    _, folder = _folder("mistral", tmp_path / "mistral", **WIDE)
    with pytest.raises(ExportError, match="does not keep the model's sliding window of 8 tokens"):
        build_fused_decoder(folder, tmp_path / "fused.onnx")
    assert not (tmp_path / "fused.onnx").exists()


@pytest.mark.slow  # ~15 s: the builder, a generic export and two parity runs
def test_auto_falls_back_to_the_generic_graph_when_the_fused_one_disagrees(tmp_path):
    """head_dim 16: the builder writes a graph whose logits differ from transformers' (ONNX
    Runtime 1.31, onnxruntime-genai 0.18); ``auto`` keeps the generic graph and says why,
    ``fused`` stops with that reason."""
    from compressor.export.decoder import export_decoder
    from compressor.models.llm import load_hf_folder
    from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig
    from compressor.steps.weight_only.step import WeightQuantizeStep, _graph_line

    _, folder = _folder("llama", tmp_path / "hd16")  # hidden 64, 4 heads: head_dim 16
    llm = load_hf_folder(folder)
    generic = export_decoder(llm.model, tmp_path / "generic.onnx")
    logs: list[str] = []
    progress = SimpleNamespace(log=logs.append, task=lambda *a, **k: _Nothing())
    ctx = SimpleNamespace(decoder=SimpleNamespace(llm=llm, text=SimpleNamespace(prompts=[_ids()])), progress=progress)

    def step(graph: str) -> WeightQuantizeStep:
        return WeightQuantizeStep(WeightQuantizeConfig(algorithm="gguf", ort_graph=graph), "wq",
                                  settings={"engine": "onnxruntime"})

    (tmp_path / "work").mkdir()
    base, info = step("auto")._fused_graph(generic, tmp_path / "work", ctx)
    assert base == generic and info["kind"] == "generic"
    assert "logits differ from the generic graph's" in info["fused_unavailable"]
    assert _graph_line(info).startswith("generic (fused unavailable: the fused graph's logits differ")
    assert any("generic decoder graph" in line for line in logs)
    with pytest.raises(ParityError, match="logits differ"):
        step("fused")._fused_graph(generic, tmp_path / "work", ctx)


class _Nothing:
    def __enter__(self):
        return lambda *a, **k: None

    def __exit__(self, *exc):
        return False


def test_ort_graph_is_an_option_of_the_gguf_algorithm():
    from pydantic import ValidationError

    from compressor.recipe.steps.weight_quantize import WeightQuantizeConfig

    assert WeightQuantizeConfig(algorithm="gguf").ort_graph == "auto"
    with pytest.raises(ValidationError, match="ort_graph applies to algorithm gguf, not rtn"):
        WeightQuantizeConfig(ort_graph="fused")
