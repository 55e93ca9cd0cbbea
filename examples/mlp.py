"""MLP family: a 3-hidden-layer perceptron on flattened Fashion-MNIST ([N, 784]).

    python examples/mlp.py            # train once (cached), writes examples/weights/mlp.safetensors

Recipe: recipes/mlp.yaml (``input_shape: [1, 784]``; the pipeline reshapes the
``[N, 1, 28, 28]`` images to the model's layout).
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from family_training import accuracy, cross_entropy, ensure_weights, fashion_arrays, train_loop  # noqa: E402

TRAIN = {"epochs": 3, "batch_size": 128, "lr": 2e-3, "seed": 0, "hidden": [512, 256, 128]}


def build(hidden: list[int] | tuple[int, ...] = (512, 256, 128), num_classes: int = 10, in_features: int = 784) -> nn.Module:
    """Linear-ReLU stack; ``hidden`` lists the hidden widths (2-3 layers in the examples)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _train():
    x, y = fashion_arrays("train")
    xt, yt = fashion_arrays("test")
    model = build(TRAIN["hidden"])
    train_loop(model, x.reshape(len(x), -1), y, cross_entropy, epochs=TRAIN["epochs"],
               batch_size=TRAIN["batch_size"], lr=TRAIN["lr"], seed=TRAIN["seed"])
    return model.state_dict(), {"test_accuracy": accuracy(model, xt.reshape(len(xt), -1), yt)}


def ensure(force: bool = False) -> Path:
    """examples/weights/mlp.safetensors, trained on first use."""
    return ensure_weights("mlp", __file__, TRAIN, _train, force=force)


if __name__ == "__main__":
    print(ensure(force="--force" in sys.argv))
