"""Decoder LLMs on a tiny random Llama (2 layers, hidden 64): loading, the KV-cache export,
weight-only INT4/INT8 for both runtimes, the measurements, the recipe and the gates."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.errors import ModelLoadError, ReportError
from compressor.recipe.schema import Recipe, WeightQuantizeConfig
from tests.llm_fixtures import tiny_llama_folder, write_text


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from compressor.models.llm import load_hf_folder

    d = tmp_path_factory.mktemp("tiny_llm")
    return load_hf_folder(tiny_llama_folder(d / "model"))


@pytest.fixture(scope="module")
def tiny_onnx(tiny_llm, tmp_path_factory):
    from compressor.export.decoder import export_decoder

    return export_decoder(tiny_llm.model, tmp_path_factory.mktemp("tiny_onnx") / "decoder.onnx")


def _decoder(path, runtime="onnxruntime"):
    from compressor.bench.llm import Decoder

    if runtime == "onnxruntime":
        from compressor.targets.onnxruntime_cpu import OrtSession

        session = OrtSession(path, 1, {})
    else:
        from compressor.targets.openvino_cpu import OpenVinoSession, write_ir

        xml = path if path.suffix == ".xml" else write_ir(path, path.with_suffix(".xml"))[0]
        session = OpenVinoSession(xml, threads=1, precision_hint="f32")
    return Decoder(session, (2, 16, 2))


def _recipe(**over):
    base = {"name": "x", "model": {"hf": "m"}, "data": {"source": {"text": "t.txt"}},
            "steps": [{"weight_quantize": {"bits": 4}}]}
    base.update(over)
    return Recipe.model_validate(base)


def test_recipe_rules():
    assert _recipe().model.domain == "llm"
    with pytest.raises(ValueError, match="exactly one of 'hf' or 'gguf'"):
        _recipe(model={"hf": "m", "gguf": "f.gguf"})
    with pytest.raises(ValueError, match="does not apply to a decoder LLM"):
        _recipe(steps=[{"quantize": {}}])
    with pytest.raises(ValueError, match="data.source must be"):
        _recipe(data={"source": "digits"})
    with pytest.raises(ValueError, match="needs a decoder LLM"):
        Recipe.model_validate({"name": "x", "model": {"onnx": "m.onnx"}, "data": {"source": "digits"},
                               "steps": [{"weight_quantize": {}}]})
    with pytest.raises(ValueError, match="power of 2"):
        WeightQuantizeConfig(group_size=100)


def test_refuses_pickled_weights_and_bad_gguf(tmp_path):
    from compressor.models.llm import load_gguf, load_hf_folder

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelLoadError, match="refused"):
        load_hf_folder(tmp_path)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_gguf(bad)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 10)
    with pytest.raises(ModelLoadError, match="cannot read GGUF"):
        load_gguf(truncated)


def test_bad_gguf_is_one_line_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 7)
    text = write_text(tmp_path / "t.txt")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: bad\nmodel: {{gguf: {bad}}}\ndata: {{source: {{text: {text}}}}}\n")
    result = cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "cannot read GGUF" in result.output and "Traceback" not in result.output


def test_export_matches_torch_and_runs_on_openvino(tiny_llm, tiny_onnx):
    from compressor.export.decoder import check_decoder_parity

    ids = np.arange(3, 20)
    assert check_decoder_parity(tiny_llm.model, tiny_onnx, ids)["passed"]
    ort_logits, _ = _decoder(tiny_onnx)(ids, _decoder(tiny_onnx).empty())
    ov = _decoder(tiny_onnx, "openvino")
    ov_logits, past = ov(ids, ov.empty())
    np.testing.assert_allclose(ov_logits, ort_logits, atol=1e-3)
    assert past[0].shape == (1, 2, len(ids), 16)


def test_perplexity_equals_the_torch_loss(tiny_llm, tiny_onnx):
    """One window covering the text: exp(mean NLL) is the HF model's own loss; sliding
    windows score every token but the first exactly once."""
    import torch

    from compressor.bench.llm import perplexity

    ids = np.asarray(tiny_llm.tokenizer(write_text.__globals__["TEXT"]).input_ids[:60], dtype=np.int64)
    with torch.inference_mode():
        loss = tiny_llm.model(torch.from_numpy(ids[None]), labels=torch.from_numpy(ids[None])).loss.item()
    dec = _decoder(tiny_onnx)
    ppl, n = perplexity(dec, ids, window=64, stride=64)
    assert n == len(ids) - 1 and ppl == pytest.approx(np.exp(loss), rel=1e-4)
    ppl2, n2 = perplexity(dec, ids, window=24, stride=8)
    assert n2 == len(ids) - 1 and ppl2 != pytest.approx(ppl, rel=1e-6)  # less context, another value
    _, n3 = perplexity(dec, ids, window=24, stride=8, bos=0)
    assert n3 == len(ids)  # with BOS the first token is scored too


@pytest.mark.parametrize("bits,mixed,expect", [(4, "head", {"MatMulNBits:4": 14, "MatMulNBits:8": 1}),
                                               (8, "head", {"MatMulNBits:8": 15}),
                                               (4, "edges", {"MatMulNBits:8": 15})])
def test_onnxruntime_matmulnbits(tiny_onnx, tmp_path, bits, mixed, expect):
    from compressor.bench.llm import agreement, greedy
    from compressor.steps.weight_only.onnxruntime import quantize_matmul_nbits

    cfg = WeightQuantizeConfig(bits=bits, group_size=32, mixed=mixed)
    details = quantize_matmul_nbits(tiny_onnx, tmp_path / "q.onnx", cfg, layers=2)
    assert details["quantized_ops"] == expect
    assert (tmp_path / "q.onnx").stat().st_size < tiny_onnx.stat().st_size
    fp32, q = _decoder(tiny_onnx), _decoder(tmp_path / "q.onnx")
    prompts = [np.arange(5, 15), np.arange(40, 52)]
    cont = [greedy(fp32, p, 6) for p in prompts]
    assert agreement(fp32, prompts, cont) == 1.0
    assert agreement(q, prompts, cont) >= 0.5  # a random 64-wide model: close logits, a few argmax flips


def test_openvino_nncf_int4_keeps_head_and_embedding_int8(tiny_onnx, tmp_path):
    from compressor.steps.weight_only.openvino import compress_openvino

    d = compress_openvino(tiny_onnx, tmp_path / "q.xml", WeightQuantizeConfig(bits=4, group_size=32), layers=2)
    assert d["mode"] == "int4_sym" and d["weight_constants"].get("i4") == 14 and d["weight_constants"].get("u8")
    ids = np.arange(3, 20)
    logits, _ = _decoder(tmp_path / "q.xml", "openvino")(ids, _decoder(tmp_path / "q.xml", "openvino").empty())
    ref, _ = _decoder(tiny_onnx)(ids, _decoder(tiny_onnx).empty())
    cos = float((logits * ref).sum() / np.linalg.norm(logits) / np.linalg.norm(ref))
    assert cos > 0.95


def test_llm_gates():
    from compressor.report.gates import GateLimits, evaluate_gates
    from compressor.report.model import Report, Result

    def row(variant, ppl, tok_s):
        return Result(variant=variant, target="onnxruntime-cpu", precision="fp32",
                      llm={"perplexity": ppl, "perplexity_tokens": 100, "decode_tokens_per_s": tok_s})

    rep = Report(recipe="r", results=[row("baseline", 10.0, 20.0), row("compressed", 10.4, 50.0)])
    gates = evaluate_gates(rep, GateLimits(max_perplexity_increase_pct=5, min_decode_tokens_per_s=40))
    assert [g.passed for g in gates] == [True, True] and gates[0].value == pytest.approx(4.0)
    gates = evaluate_gates(rep, GateLimits(max_perplexity_increase_pct=3, min_decode_tokens_per_s=60))
    assert [g.passed for g in gates] == [False, False]
    plain = Report(recipe="r", results=[Result(variant="baseline", target="t", precision="fp32"),
                                        Result(variant="compressed", target="t", precision="int8")])
    with pytest.raises(ReportError, match="needs decoder-LLM perplexity"):
        evaluate_gates(plain, GateLimits(max_perplexity_increase_pct=5))


def test_canterbury_extraction_writes_by_name_only(tmp_path):
    """examples/smollm2.py takes tests/testdata/*.txt from the sdist by file name, so an
    archive path with '..' cannot write outside the output folder."""
    import importlib.util
    import io
    import tarfile
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("smollm2_example", Path(__file__).parents[2] / "examples/smollm2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sdist = tmp_path / "b.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in [("brotli-1/tests/testdata/alice29.txt", b"alice"),
                           ("brotli-1/tests/testdata/../../../evil/tests/testdata/x.txt", b"x"),
                           ("brotli-1/setup.py", b"code")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "out"
    written = mod.extract_canterbury(sdist, out)
    assert sorted(p.name for p in written) == ["alice29.txt", "x.txt"]
    assert all(p.parent == out for p in written) and (out / "alice29.txt").read_bytes() == b"alice"
