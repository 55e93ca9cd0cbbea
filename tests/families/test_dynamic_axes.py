"""A BERT-class encoder exported once with dynamic batch AND sequence runs at other
batch sizes and sequence lengths, matching torch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def minilm():
    spec = importlib.util.spec_from_file_location("minilm_example_dyn", EXAMPLES / "minilm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_transformer_dynamic_batch_and_sequence(tmp_path, minilm):
    import onnxruntime as ort
    import torch

    from compressor.export.onnx_export import export_onnx

    model = minilm.build_embedder(tiny=True)
    specs = [{"name": n, "shape": [1, 16], "dtype": "int64", "dynamic": {0: "batch", 1: "sequence"}}
             for n in minilm.INPUT_NAMES]
    path = export_onnx(model, tmp_path / "enc.onnx", specs)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [["batch", "sequence"]] * 3
    texts = ["what a day", "self-driving cars are the future of lazy commuting, apparently", "meh",
             "I would never ride in one", "ok"]
    for batch, seq in [(1, 128), (3, 7), (5, 40), (2, 16)]:
        feeds = minilm.tokenize(texts[:batch], seq_len=seq)
        assert feeds["input_ids"].shape == (batch, seq)
        out = sess.run(None, feeds)[0]
        with torch.inference_mode():
            ref = model(*[torch.from_numpy(feeds[n]) for n in minilm.INPUT_NAMES]).numpy()
        assert out.shape == (batch, 32)
        np.testing.assert_allclose(out, ref, atol=1e-4)
