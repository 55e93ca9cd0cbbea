"""Train the example models on CPU and cache their weights.

``ensure_weights(name)`` returns ``examples/weights/<name>.safetensors``, training
only when no cached or shipped copy matches. The cache lives outside the repo, under
``compressor.utils.io.cache_dir() / "weights"``, keyed by the seed and by a hash of
the model's source, the training code and the train config, so editing either (or the
config) retrains and an unchanged checkout never does.

Trained weights can ship with the repo in ``examples/pretrained/`` (``--ship``), with
their sha256, the key and the command that made them: a fresh clone then needs no
training, and every machine starts from the same weights (a model trained with bf16
autocast on one CPU differs from one trained in float32 on another). Shipped weights
are used only while their key matches the current code; otherwise they are retrained.

    python examples/train.py fashion_cnn [--seed 0] [--force] [--ship]
    python examples/train.py --all

Adding an example is one entry in ``REGISTRY``: the model file next to this one,
the keyword arguments for its ``build()`` and a ``TrainConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

EXAMPLES_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = EXAMPLES_DIR / "weights"
SHIPPED_DIR = EXAMPLES_DIR / "pretrained"

if importlib.util.find_spec("compressor") is None:
    # `python examples/train.py` from a checkout that is not pip-installed
    sys.path.insert(0, str(EXAMPLES_DIR.parent))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights besides the seed and the code."""

    epochs: int
    batch_size: int = 128
    lr: float = 3e-3                    # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    dataset: str = "fashion-mnist"      # a key of DATASETS
    train_samples: int | None = None    # None: the whole split (smaller for quick tests)
    test_samples: int | None = None
    # bfloat16 autocast roughly halves CPU training time where oneDNN has native
    # bf16 kernels (AVX512-BF16 / AMX); "auto" uses it only there, so other CPUs do
    # not pay for emulated bf16. Evaluation is always float32.
    amp: str = "auto"                   # "auto" | "bf16" | "off"


@dataclass(frozen=True)
class Example:
    """A trainable example: ``module`` is a file in examples/ that defines ``build``."""

    module: str
    config: TrainConfig
    build_kwargs: dict[str, Any] = field(default_factory=dict)


REGISTRY: dict[str, Example] = {
    "fashion_cnn": Example("fashion_cnn.py", TrainConfig(epochs=5, batch_size=128, lr=4e-3, label_smoothing=0.05)),
}


# ----------------------------------------------------------------------------- data

@functools.lru_cache(maxsize=1)   # decoding the idx files takes a second; tests train repeatedly
def _fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from compressor.data.sources import load_fashion_mnist

    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    # the same float32 [N, 1, 28, 28] in [0, 1] that the pipeline feeds the model
    return (x_train.astype(np.float32)[:, None] / 255.0, y_train,
            x_test.astype(np.float32)[:, None] / 255.0, y_test)


DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {
    "fashion-mnist": _fashion_mnist,
}


# ------------------------------------------------------------------------- training

def _use_bf16(amp: str) -> bool:
    if amp == "off":
        return False
    if amp == "bf16":
        return True
    if amp != "auto":
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', not {amp!r}")
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_threads() -> int:
    """CPU cores this process may run on (respects taskset / container limits)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` in eval mode, float32."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].contiguous(memory_format=torch.channels_last)
        correct += int((model(xb).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def train_classifier(
    model: nn.Module,
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    x_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    *,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.0,
    amp: str = "auto",
    eval_samples: int = 2000,
    log: Callable[[str], None] | None = None,
) -> float:
    """Train ``model`` in place with AdamW and a one-cycle schedule; return test accuracy.

    ``x_*`` are float32 ``[N, C, H, W]`` inputs exactly as the model will see them,
    ``y_*`` int64 class indices. Prints one line per epoch (test accuracy on the
    first ``eval_samples`` test items; after the last epoch, on all of them, which
    is the accuracy returned). The model is returned to
    eval mode and contiguous memory format (ready for ``state_dict`` / export).

    >>> acc = train_classifier(build(), xtr, ytr, xte, yte, epochs=5,   # doctest: +SKIP
    ...                        batch_size=128, lr=4e-3, seed=0)
    """
    if log is None:
        # flushed, so progress shows in CI logs and `... > train.log` too
        log = functools.partial(print, flush=True)
    seed_everything(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads())
    try:
        x_tr, y_tr = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.long)
        x_te, y_te = torch.as_tensor(x_test, dtype=torch.float32), torch.as_tensor(y_test, dtype=torch.long)
        bf16 = _use_bf16(amp)
        # channels_last is oneDNN's native conv layout: about 15% faster on CPU
        model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(x_tr) / batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        gen = torch.Generator().manual_seed(seed)
        acc = 0.0
        for epoch in range(1, epochs + 1):
            model.train()
            t0, total, seen = time.perf_counter(), 0.0, 0
            for idx in torch.randperm(len(x_tr), generator=gen).split(batch_size):
                xb = x_tr[idx].contiguous(memory_format=torch.channels_last)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = loss_fn(model(xb), y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            train_s = time.perf_counter() - t0
            # float32 evaluation costs about a sixth of a training epoch: watch progress
            # on a slice, and score the whole test set once, after the last epoch
            n_eval = len(x_te) if epoch == epochs else min(len(x_te), eval_samples)
            acc = evaluate(model, x_te[:n_eval], y_te[:n_eval])
            log(f"epoch {epoch}/{epochs}  loss {total / max(seen, 1):.4f}  test_acc {acc:.4f} (n={n_eval})  "
                f"train {train_s:.1f}s  eval {time.perf_counter() - t0 - train_s:.1f}s"
                + ("  (bf16 autocast)" if bf16 else ""))
        model.to(memory_format=torch.contiguous_format)
        model.eval()
        return acc
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------- weight cache

def load_example_module(file: str) -> ModuleType:
    """Import ``examples/<file>`` by path, with examples/ on sys.path for sibling imports."""
    path = EXAMPLES_DIR / file
    name = "examples_" + path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    if name in sys.modules:
        return sys.modules[name]
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod   # dataclasses look their module up while it executes
    sys.path.insert(0, str(EXAMPLES_DIR))
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(EXAMPLES_DIR))
    return mod


def cache_key(name: str) -> str:
    """First 12 hex digits of sha256(model source, training code, train config). The
    training code is the functions that decide the weights, not the whole file, so
    changes to caching or the command line keep the key."""
    import inspect

    example = REGISTRY[name]
    h = hashlib.sha256()
    h.update((EXAMPLES_DIR / example.module).read_bytes())
    for fn in _TRAINING_CODE:
        h.update(inspect.getsource(fn).encode())
    config = {"config": dataclasses.asdict(example.config), "build_kwargs": example.build_kwargs}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:12]


def cached_weights_path(name: str, seed: int = 0) -> Path:
    from compressor.utils.io import cache_dir

    return cache_dir() / "weights" / f"{name}-seed{seed}-{cache_key(name)}.safetensors"


def train_example(name: str, seed: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """Build and train a registered example; return the model and its metadata."""
    example = REGISTRY[name]
    cfg = example.config
    if cfg.dataset not in DATASETS:
        raise KeyError(f"unknown dataset {cfg.dataset!r}; known: {sorted(DATASETS)}")
    x_train, y_train, x_test, y_test = DATASETS[cfg.dataset]()
    if cfg.train_samples is not None:
        x_train, y_train = x_train[:cfg.train_samples], y_train[:cfg.train_samples]
    if cfg.test_samples is not None:
        x_test, y_test = x_test[:cfg.test_samples], y_test[:cfg.test_samples]
    seed_everything(seed)   # the initial weights depend on the seed too
    model = load_example_module(example.module).build(**example.build_kwargs)
    t0 = time.perf_counter()
    acc = train_classifier(model, x_train, y_train, x_test, y_test, cfg.epochs, cfg.batch_size, cfg.lr, seed,
                           weight_decay=cfg.weight_decay, label_smoothing=cfg.label_smoothing, amp=cfg.amp)
    meta = {
        "name": name, "test_accuracy": acc, "test_samples": len(x_test), "epochs": cfg.epochs,
        "seconds": round(time.perf_counter() - t0, 1), "seed": seed, "torch": torch.__version__,
        "threads": cpu_threads(), "bf16_autocast": _use_bf16(cfg.amp), "cache_key": cache_key(name),
        "config": dataclasses.asdict(cfg), "build_kwargs": example.build_kwargs,
    }
    return model, meta


_TRAINING_CODE = (TrainConfig, _fashion_mnist, _use_bf16, seed_everything, evaluate, train_classifier, train_example)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_weights(name: str, seed: int = 0) -> Path | None:
    """``examples/pretrained/<name>-seed<seed>.safetensors`` when it matches the current
    code (its key) and its recorded sha256; None when there is none. Raises when the
    file does not match its own recorded hash (a corrupt or tampered copy)."""
    path = SHIPPED_DIR / f"{name}-seed{seed}.safetensors"
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("cache_key") != cache_key(name):
        print(f"{path.name} was trained by other training code (key {meta.get('cache_key')}, now "
              f"{cache_key(name)}): training instead", flush=True)
        return None
    if _sha256(path) != meta.get("sha256"):
        raise RuntimeError(f"{path} does not match the sha256 recorded in {meta_path.name}; "
                           "restore it with git checkout or retrain with --force")
    return path


def ship_weights(name: str, seed: int = 0) -> Path:
    """Copy the cached weights into ``examples/pretrained/`` with their hash and the command."""
    from compressor.utils.io import atomic_path, atomic_write_json

    cached = cached_weights_path(name, seed)
    meta = json.loads(cached.with_suffix(".json").read_text())
    dst = SHIPPED_DIR / f"{name}-seed{seed}.safetensors"
    SHIPPED_DIR.mkdir(exist_ok=True)
    with atomic_path(dst) as tmp:
        shutil.copyfile(cached, tmp)
    meta.update(sha256=_sha256(dst), command=f"python examples/train.py {name} --seed {seed} --force --ship")
    atomic_write_json(dst.with_suffix(".json"), meta)
    return dst


def ensure_weights(name: str, seed: int = 0, *, force: bool = False, out_dir: Path | None = None) -> Path:
    """``examples/weights/<name>.safetensors`` (and ``<name>.json``), training only if needed.

    >>> ensure_weights("fashion_cnn")          # doctest: +SKIP
    PosixPath('.../examples/weights/fashion_cnn.safetensors')
    """
    from safetensors.torch import save_file

    from compressor.utils.io import atomic_path, atomic_write_json

    if name not in REGISTRY:
        raise KeyError(f"no example {name!r}; registered: {sorted(REGISTRY)}")
    cached = cached_weights_path(name, seed)
    cached_meta = cached.with_suffix(".json")
    shipped = None if force or (cached.exists() and cached_meta.exists()) else shipped_weights(name, seed)
    if shipped is not None:
        for src, dst in ((shipped.with_suffix(".json"), cached_meta), (shipped, cached)):
            with atomic_path(dst) as tmp:   # weights last, as below
                shutil.copyfile(src, tmp)
    elif force or not cached.exists() or not cached_meta.exists():
        model, meta = train_example(name, seed)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        atomic_write_json(cached_meta, meta)
        with atomic_path(cached) as tmp:   # weights last: their presence marks a complete entry
            save_file(state, str(tmp), metadata={"example": name, "seed": str(seed), "cache_key": cache_key(name)})
    out_dir = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    target = out_dir / f"{name}.safetensors"
    for src, dst in ((cached_meta, target.with_suffix(".json")), (cached, target)):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"examples to train: {', '.join(REGISTRY)}")
    parser.add_argument("--all", action="store_true", help="every registered example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="retrain even when cached or shipped weights exist")
    parser.add_argument("--ship", action="store_true", help="copy the weights into examples/pretrained/ (to commit)")
    args = parser.parse_args(argv)
    names = list(REGISTRY) if args.all else args.names
    unknown = [n for n in names if n not in REGISTRY]
    if not names or unknown:
        parser.error(f"unknown example(s) {unknown}" if unknown else "name an example or pass --all")
    for name in names:
        path = ensure_weights(name, args.seed, force=args.force)
        if args.ship:
            print(f"shipped: {ship_weights(name, args.seed)}")
        meta = json.loads(path.with_suffix(".json").read_text())
        print(f"{name}: {path}  test_accuracy {meta['test_accuracy']:.4f}  "
              f"(trained {meta['epochs']} epochs in {meta['seconds']}s, seed {meta['seed']}; "
              f"cache {cached_weights_path(name, args.seed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
