"""VAE family: an MLP variational autoencoder on Fashion-MNIST, split into the two
parts that get deployed separately.

- ``build_encoder()``: image ``[N, 1, 28, 28]`` -> latent mean ``mu`` ``[N, LATENT]``
- ``build_decoder()``: latent ``z`` ``[N, LATENT]`` -> image ``[N, 1, 28, 28]`` (generation)
- ``build_reconstruct()``: encoder mu -> decoder, deterministic, for the reconstruction MSE

    python examples/vae.py            # train once (cached): examples/weights/vae_{encoder,decoder,reconstruct}.safetensors

Data factory ``latents``: the FP32 encoder's ``mu`` of Fashion-MNIST images as the
decoder's input, with the original images as the target, so the decoder's MSE is
measured against the real images (recipes/vae_decoder.yaml).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from family_training import ensure_weights, fashion_arrays, load_weights, train_loop  # noqa: E402

LATENT = 16
TRAIN = {"epochs": 2, "batch_size": 128, "lr": 2e-3, "seed": 0, "hidden": 400, "latent": LATENT, "beta": 1.0}


class Encoder(nn.Module):
    def __init__(self, hidden: int = 400, latent: int = LATENT) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deployed encoder returns the mean only (deterministic)."""
        return self.mu(self.body(x))

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, hidden: int = 400, latent: int = LATENT) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 784), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z).reshape(-1, 1, 28, 28)


class Reconstruct(nn.Module):
    """encoder mu -> decoder: the deterministic reconstruction."""

    def __init__(self, hidden: int = 400, latent: int = LATENT) -> None:
        super().__init__()
        self.encoder = Encoder(hidden, latent)
        self.decoder = Decoder(hidden, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build_encoder(hidden: int = 400, latent: int = LATENT) -> nn.Module:
    return Encoder(hidden, latent)


def build_decoder(hidden: int = 400, latent: int = LATENT) -> nn.Module:
    return Decoder(hidden, latent)


def build_reconstruct(hidden: int = 400, latent: int = LATENT) -> nn.Module:
    return Reconstruct(hidden, latent)


def _vae_loss(model: Reconstruct, xb: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    mu, logvar = model.encoder.distribution(xb)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation
    recon = model.decoder(z)
    rec = nn.functional.binary_cross_entropy(recon, xb, reduction="sum") / len(xb)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(xb)
    return rec + TRAIN["beta"] * kl


def _train():
    x, _ = fashion_arrays("train")
    xt, _ = fashion_arrays("test")
    model = Reconstruct(TRAIN["hidden"], TRAIN["latent"])
    train_loop(model, x, x, _vae_loss, epochs=TRAIN["epochs"], batch_size=TRAIN["batch_size"], lr=TRAIN["lr"],
               seed=TRAIN["seed"])
    with torch.inference_mode():
        mse = float(((model(torch.as_tensor(xt)) - torch.as_tensor(xt)) ** 2).mean())
    return model.state_dict(), {"test_mse": mse}


def ensure(force: bool = False) -> dict[str, Path]:
    """Train the VAE once (cached); write the full, encoder and decoder weights."""
    from safetensors.torch import load_file, save_file

    from compressor.utils.io import atomic_path

    full = ensure_weights("vae_reconstruct", __file__, TRAIN, _train, force=force)
    state = load_file(str(full))
    out = {"reconstruct": full}
    for part in ("encoder", "decoder"):
        dst = full.with_name(f"vae_{part}.safetensors")
        with atomic_path(dst) as tmp:
            save_file({k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}, str(tmp))
        out[part] = dst
    return out


def latents(split: str = "test", samples: int | None = None, encoder_weights: str | None = None,
            pretrained: bool = True, hidden: int = 400, latent: int = LATENT):
    """Decoder data: ``{"z": FP32 encoder mu}`` with the source images as the MSE target.
    ``pretrained=False``: a seeded random encoder (fast tests)."""
    from compressor.data import Dataset

    x, _ = fashion_arrays(split, samples)
    torch.manual_seed(0)
    enc = Encoder(hidden, latent)
    if pretrained:
        load_weights(enc, Path(encoder_weights) if encoder_weights else ensure()["encoder"])
    with torch.inference_mode():
        z = torch.cat([enc(torch.as_tensor(x[i:i + 1000])) for i in range(0, len(x), 1000)]).numpy()
    return Dataset({"z": z.astype(np.float32)}, x, f"fashion-mnist-latents/{split}")


if __name__ == "__main__":
    print(ensure(force="--force" in sys.argv))
