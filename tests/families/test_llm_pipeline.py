"""`compressor run` on a tiny decoder-LLM recipe, end to end on ONNX Runtime and OpenVINO:
report fields, markdown, recipe gates and `compressor check` with the LLM gates."""

from __future__ import annotations

import json

import pytest

from tests.llm_fixtures import llm_recipe, tiny_llama_folder, write_text


@pytest.mark.slow
def test_run_tiny_llm_both_runtimes(cli, tmp_path):
    model = tiny_llama_folder(tmp_path / "model")
    text = write_text(tmp_path / "text.txt")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(llm_recipe(model, text, gates="gates: {max_perplexity_increase_pct: 50}"))
    run = tmp_path / "run"
    result = cli("run", str(recipe), "--out", str(run))
    assert result.exit_code == 0, result.output
    rep = json.loads((run / "report.json").read_text())
    rows = {(r["variant"], r["target"]): r for r in rep["results"]}
    assert set(rows) == {(v, t) for v in ("baseline", "compressed") for t in ("onnxruntime-cpu", "openvino-cpu")}
    for (variant, _), r in rows.items():
        m = r["llm"]
        assert r["status"] == "ok" and r["accuracy"]["metric"] == "perplexity"
        assert m["perplexity"] > 1 and m["perplexity_tokens"] == 159  # 160 tokens, no BOS: all but the first
        assert 0 <= m["next_token_agreement"] <= 1 and m["decode_tokens_per_s"] > 0 and m["peak_rss_bytes"] > 0
        assert r["precision"] == ("fp32" if variant == "baseline" else "int4")
        # tokenisation recorded: the tiny tokenizer adds no BOS, no chat template was asked for
        assert (m["bos"], m.get("bos_token"), m["eos_token"], m["chat_template"]) == (False, None, "</s>", False)
        assert m["bos_source"] == "the tokenizer adds no BOS (its add_bos_token)"
    base = rows[("baseline", "onnxruntime-cpu")]
    assert base["llm"]["next_token_agreement"] == 1.0  # FP32 against its own continuations
    # the same FP32 model on both runtimes: the same perplexity
    assert rows[("baseline", "openvino-cpu")]["llm"]["perplexity"] == pytest.approx(base["llm"]["perplexity"], rel=1e-3)
    assert rows[("compressed", "onnxruntime-cpu")]["size_bytes"] < base["size_bytes"]
    assert {g["name"] for g in rep["gates"]} == {"max_perplexity_increase_pct"}
    md = (run / "report.md").read_text()
    assert "## Decoder LLM" in md and "decode_tok_s" in md
    assert cli("check", str(run)).exit_code == 0
    tight = cli("check", str(run), "--min-decode-tokens-per-s", "1e9")
    assert tight.exit_code == 1 and "min_decode_tokens_per_s" in tight.output
