"""MobileNetV2 (ImageNet backbone) fine-tuned briefly on Fashion-MNIST, then FP32 vs INT8
top-1 on the labelled test set: the "accuracy drop on a labelled set" half of issue 4.

Fashion-MNIST 28x28 grey is upscaled to 64x64 (bilinear), replicated to 3 channels and
ImageNet-normalised; a new 10-class head; one epoch of AdamW on a train subset with 2
threads. Run by benchmarks/fashion_finetune.py and benchmarks/mobilenet_int8.py (``finetune_and_quantize``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

SIZE = 64


def fashion_images(split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n, 3, SIZE, SIZE] ImageNet-normalised, int64 labels."""
    import torch

    from compressor.data import load_split
    from mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD

    ds = load_split("fashion-mnist", split, n, seed=seed)
    x = ds.inputs["input"].reshape(len(ds), 1, 28, 28).astype(np.float32)
    if x.max() > 1.5:  # raw 0-255 pixels
        x = x / 255.0
    x = torch.nn.functional.interpolate(torch.from_numpy(x), size=SIZE, mode="bilinear", align_corners=False)
    x = x.numpy().repeat(3, axis=1)
    x = (x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    return x.astype(np.float32), ds.labels.astype(np.int64)


def finetune(train_samples: int, seed: int = 0):
    import torch

    import mobilenet_v2 as mn

    torch.manual_seed(seed)
    x, y = fashion_images("train", train_samples, seed=seed)
    model = mn.build(num_classes=10, pretrained=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 64):
        idx = perm[i:i + 64]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
        opt.step()
    return model.eval()


def finetune_and_quantize(out: Path, train_samples: int = 4000, test_samples: int = 2000,
                          openvino: bool = False) -> dict:
    """Fine-tune, export, quantize (old and new settings), top-1 of each on the test set."""
    import nncf
    import onnx
    import torch

    from compressor.data.dataset import Dataset
    from compressor.export.onnx_export import export_onnx
    from compressor.recipe.schema import QuantizeConfig
    from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
    from _common import ort_session, run_all

    t0 = time.perf_counter()
    model = finetune(train_samples)
    train_s = time.perf_counter() - t0
    fp32 = export_onnx(model, out / "fashion_mnv2.fp32.onnx",
                       [{"name": "input", "shape": [2, 3, SIZE, SIZE], "dtype": "float32", "dynamic": {}}])
    # calibration from train images the model did not train on (seed 1 draws other samples)
    calib, _ = fashion_images("train", 128, seed=1)
    xt, yt = fashion_images("test", test_samples, seed=0)
    old = out / "fashion_mnv2.ort.onnx"
    quantize_onnx(fp32, old, QuantizeConfig(), Dataset({"input": calib}))
    head = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node if n.op_type == "Gemm"]
    recipe_cfg = out / "fashion_mnv2.ort-new.onnx"
    quantize_onnx(fp32, recipe_cfg, QuantizeConfig(moving_average=True, calibration_batch_size=1, nodes_to_exclude=head),
                  Dataset({"input": calib}))
    # the shipped recipe's settings (recipes/mobilenet_v2.yaml): + equalization + fast bias correction
    shipped = out / "fashion_mnv2.ort-shipped.onnx"
    quantize_onnx(fp32, shipped, QuantizeConfig(moving_average=True, calibration_batch_size=1, nodes_to_exclude=head,
                                                 equalization=True, bias_correction="fast"),
                  Dataset({"input": calib}))
    gptq = {}
    for tag, extra in (("eq-gptq", {"weight_rounding": "gptq"}),
                       ("eq-gptq-bc", {"weight_rounding": "gptq", "bias_correction": "fast"}),
                       ("eq-adaround", {"weight_rounding": "adaround"}),
                       ("eq-adaround-bc", {"weight_rounding": "adaround", "bias_correction": "fast"}),
                       ("eq-smooth-gptq-bc", {"activation_smoothing": 0.6, "weight_rounding": "gptq",
                                              "bias_correction": "fast"})):
        gptq[tag] = out / f"fashion_mnv2.ort-{tag}.onnx"
        quantize_onnx(fp32, gptq[tag], QuantizeConfig(moving_average=True, calibration_batch_size=1,
                                                       nodes_to_exclude=head, equalization=True, **extra),
                      Dataset({"input": calib}))
    new = out / "fashion_mnv2.nncf.onnx"
    q = nncf.quantize(onnx.load(str(fp32)), nncf.Dataset([{"input": calib[i:i + 1]} for i in range(len(calib))]),
                      subset_size=len(calib), preset=nncf.QuantizationPreset.MIXED, fast_bias_correction=False)
    onnx.save(q, str(new))
    res = {"train_samples": train_samples, "test_samples": test_samples, "size": SIZE, "epochs": 1,
           "train_seconds": round(train_s, 1), "calibration_samples": len(calib), "top1": {}}
    variants = (("fp32", fp32), ("int8 ort minmax (old recipe)", old),
                ("int8 ort moving-avg, head fp32 (new recipe)", recipe_cfg),
                ("int8 shipped recipe: + equalization + bias correction fast", shipped),
                ("int8 + equalization + GPTQ rounding", gptq["eq-gptq"]),
                ("int8 + equalization + GPTQ rounding + bias correction fast", gptq["eq-gptq-bc"]),
                ("int8 + equalization + AdaRound", gptq["eq-adaround"]),
                ("int8 + equalization + AdaRound + bias correction fast", gptq["eq-adaround-bc"]),
                ("int8 + equalization + activation smoothing + GPTQ rounding + bias correction fast",
                 gptq["eq-smooth-gptq-bc"]),
                ("int8 nncf mixed + full bias corr.", new))
    for name, path in variants:
        res["top1"][name] = float(np.mean(run_all(ort_session(path), xt, batch=100).argmax(1) == yt))
    res["drop_points"] = {k: round((res["top1"]["fp32"] - v) * 100, 2) for k, v in res["top1"].items() if k != "fp32"}
    if openvino:  # the same ONNX models run by compressor's OpenVINO target
        from compressor.targets.base import ModelArtifact
        from compressor.targets.registry import make_target
        from compressor.targets.spec import load_target

        ov = make_target(load_target("openvino-cpu"))
        res["top1_openvino"] = {}
        for i, (name, path) in enumerate(variants):
            art = ov.compile(ModelArtifact(f"fashion-ov-{i}", "fp32" if i == 0 else "int8", path, []), out,
                             precision="fp32" if i == 0 else "int8")
            res["top1_openvino"][name] = float(np.mean(run_all(ov.load(art, threads=2), xt, batch=100).argmax(1) == yt))
        res["drop_points_openvino"] = {k: round((res["top1_openvino"]["fp32"] - v) * 100, 2)
                                       for k, v in res["top1_openvino"].items() if k != "fp32"}
    print("fashion:", res, flush=True)
    del torch
    return res
