"""The step contract: ``Step.run(model, ctx) -> model``, with a :class:`StepReport`.

``run`` is a template method: it reuses the step's finished result when resuming, else
calls the step's :meth:`Step.apply`, times it and records the result for a later resume.
A step implements only ``apply``. Torch-domain steps (distill, prune, finetune) take and
return an ``nn.Module`` and resume from per-step checkpoints; ONNX-domain steps (quantize,
weight_quantize) take and return a path to an ONNX file and resume from the run's step cache (see the end
of this module).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from compressor.stepcache import StepCache
from compressor.utils.io import sha256_file

if TYPE_CHECKING:
    from compressor.context import RunContext


@dataclass
class StepReport:
    name: str
    kind: str
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "seconds": round(self.seconds, 3), "cached": self.cached,
                **({"details": self.details} if self.details else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepReport:
        """A report recorded by an earlier run (so ``cached``)."""
        return cls(d["name"], d["kind"], seconds=d.get("seconds", 0.0), details=d.get("details", {}), cached=True)


class Step(abc.ABC):
    """One recipe step. ``settings``: the quantization settings the targets of this step's
    group fill in where the recipe is silent (see :meth:`quant_config`); ``targets``: the
    targets whose model this step makes (ONNX-domain steps run once per group of targets)."""

    kind: ClassVar[str]
    domain: ClassVar[Literal["torch", "onnx"]]
    #: how the step changed the torch model's architecture, as JSON-able data, set by ``run``:
    #: ``{"op": "prune", ...pruning history}`` or ``{"op": "student", "student": {...}}`` (None: unchanged).
    #: :mod:`compressor.steps.rebuild` replays these to rebuild a chain's result from the factory.
    structure: dict[str, Any] | None = None

    def __init__(self, config: Any, name: str, *, settings: dict[str, Any] | None = None,
                 targets: list[str] | None = None):
        self.config = config
        self.name = name
        self.settings = dict(settings or {})
        self.targets = targets
        self.report = StepReport(name=name, kind=self.kind)

    def run(self, model: Any, ctx: RunContext) -> Any:
        """Template: the finished result on ``--resume``, else :meth:`apply`, timed and recorded."""
        kept = _restore(self, model, ctx)
        if kept is not None:
            ctx.progress.log(f"[bold]reused[/] {self.name} (finished before the interruption)")
            return kept
        ctx.progress.log(f"[bold]step[/] {self.name}" + (f" for {', '.join(self.targets)}"
                                                         if self.targets and self.domain == "onnx" else ""))
        t0 = time.perf_counter()
        out = self.apply(model, ctx)
        self.report.seconds = self.report.seconds or time.perf_counter() - t0
        if self.targets is not None:
            self.report.details["targets"] = self.targets
        _record(self, model, out, ctx)
        return out

    @abc.abstractmethod
    def apply(self, model: Any, ctx: RunContext) -> Any:
        """Transform ``model``; record what happened in ``self.report.details``."""

    def trainee(self, model: Any, ctx: RunContext) -> Any:
        """The module a torch-domain step changes and resumes into (distill: its student)."""
        return model

    def output_precision(self) -> str | None:
        """The precision of the model this step produces (None: unchanged)."""
        return None

    def output_files(self, out: Path) -> list[Path]:
        """The files an ONNX-domain step's output ``out`` consists of (kept for resume)."""
        return [out]

    def cache_inputs(self, ctx: RunContext) -> dict[str, Any]:
        """What the output depends on besides the input model, config, settings, seed and
        the recipe's ``data:`` (e.g. the calibration text itself); part of the resume key."""
        return {}

    def quant_config(self, cfg: Any) -> Any:
        """``cfg`` with this step's target ``settings`` filling in what the recipe left unset
        (what the recipe sets explicitly wins)."""
        fill = {k: v for k, v in self.settings.items() if k not in cfg.model_fields_set}
        return cfg.model_copy(update=fill) if fill else cfg


def onnx_output_path(ctx: RunContext, name: str) -> Path:
    return ctx.artifacts_dir / f"{name}.onnx"


# ----------------------------------------------------------------------------- resume
# torch-domain steps keep their finished weights and report details in the step's checkpoint
# folder (compressor.steps.checkpoint), loaded into ``step.trainee``; ONNX-domain steps keep a
# record in the run's step cache keyed by the input model's sha256, the config, the target
# settings, the seed and the data, with the output file.


def _restore(step: Step, model: Any, ctx: RunContext) -> Any | None:
    """The step's finished output when resuming (its report restored too), else None."""
    if step.domain == "torch":
        from compressor.steps import checkpoint

        module = step.trainee(model, ctx)
        done = checkpoint.finished(ctx, step.name, module)  # replays a recorded pruning history
        if done is None:
            return None
        step.report.details = {**done, "resumed": "finished in an earlier run"}
        step.report.cached = True
        history = checkpoint.pruning_history(ctx, step.name)
        if history is not None:
            step.structure = {"op": "prune", **history}
        return module
    cache = _cache(ctx)
    rec = cache.get(f"step:{step.name}", _onnx_key(step, model, ctx, cache))
    if rec is None:
        return None
    step.report = StepReport.from_dict(rec["data"]["report"])
    return ctx.run_dir / rec["data"]["output"]


def _record(step: Step, model: Any, out: Any, ctx: RunContext) -> None:
    """Keep the finished output of ``step`` for a later ``--resume``."""
    if step.domain == "torch":
        from compressor.steps import checkpoint

        pruned = step.structure if step.structure and step.structure.get("op") == "prune" else None
        history = {k: v for k, v in pruned.items() if k != "op"} if pruned else None
        checkpoint.mark_finished(ctx, step.name, out, step.report.details, pruning=history)
        return
    cache = _cache(ctx)
    out_path = Path(out)
    cache.put(f"step:{step.name}", _onnx_key(step, model, ctx, cache),
              {"output": str(out_path.relative_to(ctx.run_dir)), "report": step.report.to_dict(),
               "precision": step.output_precision()}, step.output_files(out_path))


def _cache(ctx: RunContext) -> StepCache:
    return ctx.cache or StepCache(ctx.run_dir, reuse=False)


def _onnx_key(step: Step, model: Path, ctx: RunContext, cache: StepCache) -> str:
    extra = step.cache_inputs(ctx)
    return cache.key("onnx-step", kind=step.kind, name=step.name, input=sha256_file(model),
                     config=step.config.model_dump(mode="json"), overrides=step.settings,
                     seed=ctx.seed, data=ctx.recipe.data.model_dump(mode="json"), **({"inputs": extra} if extra else {}))
