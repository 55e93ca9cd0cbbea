"""MobileNetV2 INT8 agreement probe: ORT QDQ with minmax / percentile / entropy calibration
(64 calibration crops, 100 evaluation crops).

    nice python benchmarks/mobilenet_calibration_probe.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from _common import ROOT, load_example  # noqa: E402 - puts the checkout on sys.path

import onnxruntime as ort  # noqa: E402

from compressor.data.dataset import Dataset  # noqa: E402
from compressor.export.onnx_export import export_onnx  # noqa: E402
from compressor.recipe.schema import QuantizeConfig  # noqa: E402
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx  # noqa: E402


def main() -> None:
    out = ROOT / "benchmarks" / "out" / "mobilenet_probe"
    out.mkdir(parents=True, exist_ok=True)
    mn = load_example("mobilenet_v2")
    calib, ev = mn.sample_images(64, seed=0), mn.sample_images(100, seed=1)
    fp32 = out / "fp32.onnx"
    if not fp32.exists():
        export_onnx(mn.build(pretrained=True).eval(), fp32,
                    [{"name": "input", "shape": [2, 3, 224, 224], "dtype": "float32", "dynamic": {}}])

    def run(p: Path) -> np.ndarray:
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        return np.concatenate([s.run(None, {"input": ev[i:i + 10]})[0] for i in range(0, 100, 10)])

    ref = run(fp32)
    p = np.exp(ref - ref.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    top2 = np.sort(p, 1)[:, -2:]
    print("fp32 max prob median", np.median(top2[:, 1]), "margin median", np.median(top2[:, 1] - top2[:, 0]))
    variants = [("minmax", {}), ("percentile", {"calibration": "percentile", "percentile": 99.99}),
                ("entropy", {"calibration": "entropy"})]
    for name, cfg in variants:
        t = time.time()
        q = out / f"{name}.onnx"
        quantize_onnx(fp32, q, QuantizeConfig(activation_type="uint8", weight_type="int8", per_channel=True, **cfg),
                      Dataset({"input": calib}))
        o = run(q)
        cos = np.mean((o * ref).sum(1) / np.linalg.norm(o, axis=1) / np.linalg.norm(ref, axis=1))
        top5 = np.mean([ref[i].argmax() in np.argsort(o[i])[-5:] for i in range(100)])
        print(name, "agree", np.mean(o.argmax(1) == ref.argmax(1)), "top5-contains", top5, "cos", round(float(cos), 4),
              f"{time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
