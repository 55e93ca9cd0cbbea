"""Shared helpers for the model-family examples (mlp, rnn, vae, minilm): Fashion-MNIST
arrays, a short CPU training loop and a weight cache.

Trained weights are cached outside the repo under
``compressor.utils.io.cache_dir() / "weights"``, keyed by a hash of the example's
source, this file's source and the training config, so an unchanged checkout never
retrains. ``ensure_weights`` copies the cached file to ``examples/weights/<name>.safetensors``
(git-ignored), the path the recipes under ``recipes/`` name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

EXAMPLES_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = EXAMPLES_DIR / "weights"

if str(EXAMPLES_DIR.parent) not in sys.path:
    # `python examples/mlp.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(EXAMPLES_DIR.parent))


def fashion_arrays(split: str, samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as the pipeline feeds it: float32 ``[N, 1, 28, 28]`` in [0, 1], int64 labels."""
    from compressor.data.sources import load_fashion_mnist

    x, y = load_fashion_mnist(split)
    if samples is not None:
        x, y = x[:samples], y[:samples]
    return x.astype(np.float32)[:, None] / 255.0, y


def train_loop(model: nn.Module, x: np.ndarray, targets: np.ndarray, loss_fn: Callable[..., torch.Tensor], *,
               epochs: int, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
               log: Callable[[str], None] = print) -> nn.Module:
    """Adam with a linear decay; ``loss_fn(model, xb, tb) -> loss``. Returns the model in eval mode."""
    torch.manual_seed(seed)
    xt, tt = torch.as_tensor(x), torch.as_tensor(targets)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.05, 1.0 - s / steps))
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        t0, total = time.perf_counter(), 0.0
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            loss = loss_fn(model, xt[idx], tt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch}/{epochs}  loss {total / len(xt):.4f}  {time.perf_counter() - t0:.1f}s")
    return model.eval()


def cross_entropy(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(xb), yb)


@torch.inference_mode()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    model.eval()
    pred = torch.cat([model(torch.as_tensor(x[i:i + batch_size])).argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred.numpy() == y).mean())


def cache_key(source: Path, config: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    h.update(Path(__file__).resolve().read_bytes())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def ensure_weights(name: str, source: str | Path, config: dict[str, Any],
                   train: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]], *,
                   force: bool = False, out_dir: Path | None = None) -> Path:
    """``examples/weights/<name>.safetensors`` (+ ``.json`` metadata), training only when the
    cache has no entry for this source + config. ``train() -> (state_dict, metadata)``."""
    from safetensors.torch import save_file

    from compressor.utils.io import atomic_path, atomic_write_json, cache_dir

    key = cache_key(Path(source).resolve(), config)
    cached = cache_dir() / "weights" / f"{name}-{key}.safetensors"
    meta_path = cached.with_suffix(".json")
    if force or not cached.exists() or not meta_path.exists():
        threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        try:
            state, meta = train()
        finally:
            torch.set_num_threads(threads)
        meta = {"name": name, "cache_key": key, "config": config, "seconds": round(time.perf_counter() - t0, 1),
                "torch": torch.__version__, **meta}
        atomic_write_json(meta_path, meta)
        with atomic_path(cached) as tmp:  # weights last: their presence marks a complete entry
            save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata={"example": name})
    dst = (Path(out_dir) if out_dir else WEIGHTS_DIR) / f"{name}.safetensors"
    for src, d in ((meta_path, dst.with_suffix(".json")), (cached, dst)):
        with atomic_path(d) as tmp:
            shutil.copyfile(src, tmp)
    return dst


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()
