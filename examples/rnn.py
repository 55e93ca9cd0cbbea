"""RNN family: LSTM and GRU classifiers reading a Fashion-MNIST image as 28 rows
(a 28-step sequence of 28 features, input ``[N, 28, 28]``).

    python examples/rnn.py            # train both once (cached): examples/weights/{lstm,gru}.safetensors

The dynamo exporter writes ``nn.LSTM``/``nn.GRU`` as the ONNX ``LSTM``/``GRU`` ops;
ONNX Runtime's dynamic INT8 quantizes LSTM (DynamicQuantizeLSTM) and the Gemm head,
GRU only the head. Recipes: recipes/lstm.yaml, recipes/gru.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from family_training import accuracy, cross_entropy, ensure_weights, fashion_arrays, train_loop  # noqa: E402

TRAIN = {"epochs": 2, "batch_size": 128, "lr": 3e-3, "seed": 0, "hidden": 128}


class RowClassifier(nn.Module):
    """A recurrent layer over the image rows; the last hidden state feeds a linear head."""

    def __init__(self, cell: str = "lstm", hidden: int = 128, num_classes: int = 10, features: int = 28,
                 layers: int = 1) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def build_lstm(hidden: int = 128, num_classes: int = 10) -> nn.Module:
    return RowClassifier("lstm", hidden, num_classes)


def build_gru(hidden: int = 128, num_classes: int = 10) -> nn.Module:
    return RowClassifier("gru", hidden, num_classes)


def _trainer(cell: str):
    def train():
        x, y = fashion_arrays("train")
        xt, yt = fashion_arrays("test")
        model = RowClassifier(cell, TRAIN["hidden"])
        train_loop(model, x[:, 0], y, cross_entropy, epochs=TRAIN["epochs"], batch_size=TRAIN["batch_size"],
                   lr=TRAIN["lr"], seed=TRAIN["seed"])
        return model.state_dict(), {"test_accuracy": accuracy(model, xt[:, 0], yt)}
    return train


def ensure(cell: str = "lstm", force: bool = False) -> Path:
    """examples/weights/<cell>.safetensors, trained on first use."""
    return ensure_weights(cell, __file__, {**TRAIN, "cell": cell}, _trainer(cell), force=force)


if __name__ == "__main__":
    for c in ("lstm", "gru"):
        print(ensure(c, force="--force" in sys.argv))
