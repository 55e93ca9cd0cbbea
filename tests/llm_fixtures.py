"""A tiny random Llama (2 layers, hidden 64) saved as a Hugging Face folder with a small
byte-level BPE tokenizer trained on the fly, plus a text file: a decoder-LLM fixture that
builds in about a second, offline."""

from __future__ import annotations

from pathlib import Path

TEXT = ("Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing "
        "to do: once or twice she had peeped into the book her sister was reading, but it had no pictures or "
        "conversations in it, and what is the use of a book, thought Alice, without pictures or conversations? ")


def write_text(path: Path, repeats: int = 12) -> Path:
    path.write_text(TEXT * repeats, encoding="utf-8")
    return path


def tiny_llama_folder(folder: Path, *, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT] * 4, trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def llm_recipe(model_dir: Path, text: Path, steps: str = "  - weight_quantize: {bits: 4, group_size: 32}",
               targets: str = "[onnxruntime-cpu, openvino-cpu]", gates: str = "") -> str:
    return f"""\
name: tiny-llm
model: {{hf: {model_dir}}}
data:
  source: {{text: {text}}}
  text: {{max_tokens: 160, window: 64, stride: 32, prompts: 2, prompt_tokens: 8, continuation_tokens: 4,
         calibration_samples: 2, calibration_tokens: 16}}
steps:
{steps}
targets: {targets}
benchmark: {{threads: 1, llm: {{prefill_tokens: 16, prefill_runs: 2, decode_tokens: 4, decode_runs: 1}}}}
{gates}
"""
