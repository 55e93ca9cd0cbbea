"""``prune``: structured channel pruning through Torch-Pruning's dependency graph
(coupled layers -- residual adds, BatchNorm, concatenations, the classifier input --
are pruned together, so the model really gets smaller), or weight sparsity.

>>> # recipe:  - prune: {ratio: 0.5, importance: l2, round_to: 8}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compressor.errors import DataError, StepError
from compressor.recipe.steps.prune import PruneConfig
from compressor.steps.base import Step
from compressor.steps.prune import layers as L

if TYPE_CHECKING:
    import torch

    from compressor.context import RunContext


def example_input(ctx: RunContext, batch: int = 1) -> tuple[Any, ...]:
    """One example batch of the recipe's inputs, as torch tensors."""
    import torch

    from compressor.models.loader import example_inputs
    from compressor.models.loader import input_specs

    specs = input_specs(ctx.recipe.model)
    feeds = example_inputs(specs, batch=batch)
    return tuple(torch.from_numpy(feeds[s["name"]]) for s in specs)


def count_macs_params(model: torch.nn.Module, example: tuple[Any, ...]) -> tuple[int, int]:
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def _importance(cfg: PruneConfig) -> Any:
    import torch_pruning as tp

    return {
        "l1": lambda: tp.importance.MagnitudeImportance(p=1),
        "l2": lambda: tp.importance.MagnitudeImportance(p=2),
        "taylor": lambda: tp.importance.TaylorImportance(),
        "random": lambda: tp.importance.RandomImportance(),
    }[cfg.importance]()


class PruneStep(Step):
    kind = "prune"
    domain = "torch"
    config: PruneConfig

    def apply(self, model: torch.nn.Module, ctx: RunContext) -> torch.nn.Module:
        cfg = self.config
        example = example_input(ctx)
        ignored = L.resolve_ignored(model, cfg.ignored_layers)
        classifier = L.output_layer(model, example) if cfg.ignore_classifier else None
        if classifier is not None and all(classifier[1] is not m for m in ignored):
            ignored.append(classifier[1])
        macs0, params0 = count_macs_params(model, example)
        channels0 = L.channel_counts(model)
        details: dict[str, Any] = {"mode": cfg.mode, "ratio": cfg.ratio,
                                   "ignored_layers": [n for n, m in model.named_modules() if any(m is i for i in ignored)]}
        history = None
        if cfg.mode == "structured":
            structured, history = self._structured(model, ctx, example, ignored)
            details.update(structured)
            self.structure = {"op": "prune", **history}
        else:
            details.update(self._sparsity(model, ignored))
        macs1, params1 = count_macs_params(model, example)
        channels1 = L.channel_counts(model)
        details.update({
            "params_before": params0, "params_after": params1, "macs_before": macs0, "macs_after": macs1,
            "params_ratio": round(params1 / max(params0, 1), 4), "macs_ratio": round(macs1 / max(macs0, 1), 4),
            "channels": {n: {"before": c, "after": channels1.get(n, c)} for n, c in channels0.items()},
        })
        ctx.progress.log(f"  pruned: params {params0:,} -> {params1:,}, MACs {macs0:,} -> {macs1:,}")
        self.report.details = details
        return model

    # ------------------------------------------------------------------ structured

    def _structured(self, model: torch.nn.Module, ctx: RunContext, example: tuple[Any, ...],
                    ignored: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Prune channels; returns the report details and the pruning history record."""
        import torch_pruning as tp

        from compressor.steps.pruning_history import history_record

        cfg = self.config
        with L.last_module_tracker(model) as trail:
            try:
                pruner = tp.pruner.BasePruner(
                    model, example, importance=_importance(cfg), global_pruning=cfg.global_pruning,
                    pruning_ratio=cfg.ratio, max_pruning_ratio=cfg.max_layer_ratio,
                    iterative_steps=cfg.iterative_steps, ignored_layers=ignored, round_to=cfg.round_to,
                )
            except Exception as e:  # tracing can fail in many ways inside the library
                where = trail[-1] if trail else "?"
                raise StepError(f"prune: Torch-Pruning cannot trace the model's dependency graph near layer "
                                f"{where!r}: {L.first_line(e)}",
                                hint=f"add {where!r} to prune.ignored_layers, or simplify that layer's forward") from e
        rounds = []
        for r in range(1, cfg.iterative_steps + 1):
            if cfg.importance == "taylor":
                self._taylor_gradients(model, ctx)
            pruner.step()
            model.zero_grad(set_to_none=True)
            self._check_runs(model, example)
            macs, params = count_macs_params(model, example)
            row: dict[str, Any] = {"round": r, "params": params, "macs": macs}
            if cfg.finetune_between is not None and r < cfg.iterative_steps:
                from compressor.steps.finetune import cross_entropy_loss
                from compressor.steps.training import train

                ft = cfg.finetune_between
                # the structure changes every round, so these inner runs do not resume
                res = train(model, ctx, ft, f"{self.name}-round{r}", cross_entropy_loss(ft.label_smoothing),
                            resume=False, label=f"{self.name} round {r} fine-tune")
                row["finetune"] = {"epochs": len(res.history), "val_accuracy": res.history[-1]["val_accuracy"]}
            rounds.append(row)
        details = {"importance": cfg.importance, "global_pruning": cfg.global_pruning, "round_to": cfg.round_to,
                   "iterative_steps": cfg.iterative_steps, "rounds": rounds}
        return details, history_record(pruner.pruning_history(), example)

    def _taylor_gradients(self, model: torch.nn.Module, ctx: RunContext) -> None:
        """Taylor importance needs gradients of the loss on a few real batches."""
        import torch

        from compressor.steps.training import to_tensors

        cfg = self.config
        data = ctx.train_data()
        if data.labels is None:
            raise DataError("prune importance 'taylor' needs labelled training data",
                            hint="use importance: l2, or a labelled data source")
        data = data.subset(cfg.taylor_batches * cfg.taylor_batch_size, seed=ctx.seed)
        model.eval()  # gradients without moving BatchNorm statistics
        model.zero_grad(set_to_none=True)
        for feeds, labels in data.batches(cfg.taylor_batch_size):
            loss = torch.nn.functional.cross_entropy(model(*to_tensors(feeds, data.input_names)),
                                                     torch.from_numpy(labels.astype("int64")))
            loss.backward()

    @staticmethod
    def _check_runs(model: torch.nn.Module, example: tuple[Any, ...]) -> None:
        """A forward pass after pruning: a layer the graph did not follow fails here."""
        import torch

        with L.last_module_tracker(model) as trail, torch.no_grad():
            try:
                model.eval()(*example)
            except Exception as e:
                where = trail[-1] if trail else "?"
                raise StepError(
                    f"prune: the pruned model fails at or right after layer {where!r} ({L.first_line(e)}); its forward uses "
                    "channels in a way the dependency graph cannot follow (e.g. slicing or fixed reshapes)",
                    hint=f"add {where!r} and the layers feeding it to prune.ignored_layers",
                ) from None

    # ------------------------------------------------------------------ sparsity

    def _sparsity(self, model: torch.nn.Module, ignored: list[Any]) -> dict[str, Any]:
        from compressor.steps.prune import sparsity

        cfg = self.config
        targets = {n: m for n, m in model.named_modules()
                   if L.is_weight_layer(m) and all(m is not i for i in ignored)}
        if cfg.mode == "unstructured":
            out = sparsity.magnitude_sparsity(targets, cfg.ratio)
        else:
            out = sparsity.nm_sparsity(targets, cfg.n, cfg.m)
        return {**out, "note": sparsity.NOTE}
