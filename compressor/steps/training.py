"""The training loop shared by ``finetune``, ``distill`` and fine-tuning between
pruning rounds: optimizer, LR schedule, per-epoch evaluation, early stopping,
a checkpoint per epoch and resuming from the last finished epoch.

The caller supplies the loss: ``loss_fn(model, inputs, labels) -> (loss, logits)``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from compressor.errors import DataError
from compressor.recipe.steps.training import TrainingConfig
from compressor.steps.checkpoint import load_weights, save_weights, step_dir
from compressor.utils.io import atomic_path, atomic_write_json

if TYPE_CHECKING:
    import torch

    from compressor.data import Dataset
    from compressor.context import RunContext

LossFn = Callable[["torch.nn.Module", Sequence["torch.Tensor"], "torch.Tensor"], tuple["torch.Tensor", "torch.Tensor"]]


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    stopped_early: bool = False
    best_epoch: int | None = None
    best_accuracy: float | None = None

    def summary(self) -> dict[str, Any]:
        return {"epochs_run": len(self.history), "resumed_from_epoch": self.resumed_from_epoch,
                "stopped_early": self.stopped_early, "best_epoch": self.best_epoch,
                "best_val_accuracy": self.best_accuracy, "history": self.history}


def to_tensors(batch: dict[str, np.ndarray], names: Sequence[str]) -> list[torch.Tensor]:
    import torch

    return [torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names]


def evaluate(model: torch.nn.Module, data: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on labelled ``data``."""
    import torch

    if data.labels is None:
        raise DataError(f"dataset {data.name!r} has no labels to measure accuracy with")
    model.eval()
    correct = 0
    with torch.inference_mode():
        for feeds, labels in data.batches(batch_size):
            out = model(*to_tensors(feeds, data.input_names))
            correct += int((out.argmax(1).numpy() == labels).sum())
    return correct / max(len(data), 1)


def _augment(x: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    import torch

    if mode == "none" or x.dim() != 4:
        return x
    # +-2 px shifts: pad, then crop one random window for the whole batch (cheap on CPU)
    dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
    x = torch.nn.functional.pad(x, (2, 2, 2, 2))[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    if mode == "shift_flip":
        flip = torch.rand(len(x), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainingConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    import torch

    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs * steps_per_epoch, 1))
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size * steps_per_epoch, gamma=cfg.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def train(model: torch.nn.Module, ctx: RunContext, cfg: TrainingConfig, step_name: str, loss_fn: LossFn, *,
          extra: dict[str, torch.nn.Module] | None = None, resume: bool | None = None,
          label: str = "training") -> TrainResult:
    """Train ``model`` (and the ``extra`` modules, e.g. hint adapters) in place.

    Checkpoints go to ``<run_dir>/checkpoints/<step_name>/``; with ``resume`` (default:
    ``ctx.resume``) the loop continues after the last finished epoch found there.
    """
    import torch

    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(model, ctx, cfg, step_name, loss_fn, extra or {}, ctx.resume if resume is None else resume, label)
    finally:
        torch.set_num_threads(threads)


def _train(model: torch.nn.Module, ctx: RunContext, cfg: TrainingConfig, step_name: str, loss_fn: LossFn,
           extra: dict[str, torch.nn.Module], resume: bool, label: str) -> TrainResult:
    import torch

    seed = ctx.seed if cfg.seed is None else cfg.seed
    data, eval_data = split_validation(ctx, cfg, seed)
    data = data.subset(cfg.train_samples, seed=seed)
    names = data.input_names
    x_all = [torch.from_numpy(np.ascontiguousarray(data.inputs[n])) for n in names]
    y_all = torch.from_numpy(data.labels.astype(np.int64))
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)

    torch.manual_seed(seed)
    params = [p for m in (model, *extra.values()) for p in m.parameters() if p.requires_grad]
    opt, sched = _optimizer(params, cfg, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    out_dir = step_dir(ctx, step_name)
    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0

    start = _resume_point(out_dir) if resume else 0
    if start:
        load_weights(model, out_dir / f"epoch-{start:03d}.safetensors", extra)
        state = torch.load(out_dir / f"epoch-{start:03d}.state.pt", map_location="cpu", weights_only=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        result.history = json.loads((out_dir / "history.json").read_text())[:start]
        result.best_epoch, result.best_accuracy = _best(result.history)
        since_best = start - (result.best_epoch or start)
        if (out_dir / "best.safetensors").exists():
            best_state = _read_state(out_dir / "best.safetensors")
        result.resumed_from_epoch = start
        ctx.progress.log(f"  resuming {step_name} after epoch {start}/{cfg.epochs}")

    for epoch in range(start + 1, cfg.epochs + 1):
        if cfg.early_stopping and since_best >= cfg.early_stopping.patience:
            result.stopped_early = True
            break
        t0 = time.perf_counter()
        model.train()
        for m in extra.values():
            m.train()
        total_loss, correct, seen = 0.0, 0, 0
        order = torch.randperm(len(data), generator=gen).split(cfg.batch_size)
        with ctx.progress.task(f"{label} epoch {epoch}/{cfg.epochs}", total=len(order)) as update:
            for i, idx in enumerate(order, 1):
                xb = [_augment(x[idx], cfg.augmentation, gen) for x in x_all]
                yb = y_all[idx]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    loss, logits = loss_fn(model, xb, yb)
                loss = loss.float()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total_loss += float(loss.detach()) * len(idx)
                correct += int((logits.detach().argmax(1) == yb).sum())
                seen += len(idx)
                if i % 5 == 0 or i == len(order):
                    update(i, len(order), f"loss {total_loss / seen:.4f} acc {correct / seen:.3f}")
        acc = evaluate(model, eval_data)
        row = {"epoch": epoch, "loss": round(total_loss / max(seen, 1), 5), "train_accuracy": round(correct / max(seen, 1), 5),
               "val_accuracy": round(acc, 5), "lr": float(sched.get_last_lr()[0]),
               "seconds": round(time.perf_counter() - t0, 2), "pid": os.getpid()}
        result.history.append(row)
        min_delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
        if result.best_accuracy is None or acc > result.best_accuracy + min_delta:
            result.best_epoch, result.best_accuracy, since_best = epoch, acc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_weights(model, out_dir / "best.safetensors")
        else:
            since_best += 1
        _save_epoch(out_dir, epoch, model, extra, opt, sched, gen, result.history)
        ctx.progress.log(f"  {label} epoch {epoch}/{cfg.epochs}: loss {row['loss']:.4f}  train acc "
                         f"{row['train_accuracy']:.4f}  eval acc {acc:.4f}  ({row['seconds']:.1f}s)")
    if cfg.early_stopping and since_best >= cfg.early_stopping.patience and len(result.history) < cfg.epochs:
        result.stopped_early = True
    if cfg.restore_best and best_state is not None and result.best_epoch != len(result.history):
        model.load_state_dict(best_state)
    model.eval()
    return result


def split_validation(ctx: RunContext, cfg: TrainingConfig, seed: int | None = None) -> tuple[Dataset, Dataset]:
    """(train, validation): ``cfg.eval_samples`` (default 10%, at most 2,000) samples held
    out of the training split, seeded. Epoch selection and early stopping look only at
    them, never at the evaluation split the report scores, so the reported accuracy is
    not chosen on test data."""
    data = ctx.train_data()
    if data.labels is None:
        raise DataError(f"training data {data.name!r} has no labels", hint="use a labelled data source for training steps")
    n_val = cfg.eval_samples or min(2000, max(1, len(data) // 10))
    if n_val >= len(data):
        raise DataError(f"training data {data.name!r} has {len(data)} samples: too few to hold out {n_val} for validation",
                        hint="lower eval_samples")
    perm = np.random.default_rng(ctx.seed if seed is None else seed).permutation(len(data))
    return data.take(np.sort(perm[n_val:])), data.take(np.sort(perm[:n_val]))


def _save_epoch(out_dir: Any, epoch: int, model: Any, extra: dict[str, Any], opt: Any, sched: Any, gen: Any,
                history: list[dict[str, Any]]) -> None:
    import torch

    save_weights(model, out_dir / f"epoch-{epoch:03d}.safetensors", extra)
    with atomic_path(out_dir / f"epoch-{epoch:03d}.state.pt") as tmp:
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state()}, tmp)
    atomic_write_json(out_dir / "history.json", history)  # last: it says which epochs are complete
    for old in out_dir.glob("epoch-*"):  # keep only the newest epoch's files
        if not old.name.startswith(f"epoch-{epoch:03d}."):
            old.unlink(missing_ok=True)


def _resume_point(out_dir: Any) -> int:
    """The last epoch whose checkpoint files and history line all exist (0: none)."""
    hist = out_dir / "history.json"
    if not hist.exists():
        return 0
    n = len(json.loads(hist.read_text()))
    ok = (out_dir / f"epoch-{n:03d}.safetensors").exists() and (out_dir / f"epoch-{n:03d}.state.pt").exists()
    return n if ok else 0


def _best(history: list[dict[str, Any]]) -> tuple[int | None, float | None]:
    if not history:
        return None, None
    row = max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    return int(row["epoch"]), float(row["val_accuracy"])


def _read_state(path: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    return {k.partition(".")[2]: v for k, v in load_file(str(path)).items() if k.startswith("model.")}
