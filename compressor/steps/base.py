"""The step contract: ``Step.run(model, ctx) -> model``, with a :class:`StepReport`.

Torch-domain steps (distill, prune, finetune) take and return an ``nn.Module``;
ONNX-domain steps (quantize) take and return a path to an ONNX file.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from compressor.pipeline import RunContext


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


class Step(abc.ABC):
    kind: ClassVar[str]
    domain: ClassVar[Literal["torch", "onnx"]]
    #: how the step changed the torch model's architecture, as JSON-able data, set by ``run``:
    #: ``{"op": "prune", ...pruning history}`` or ``{"op": "student", "student": {...}}`` (None: unchanged).
    #: :mod:`compressor.steps.rebuild` replays these to rebuild a chain's result from the factory.
    structure: dict[str, Any] | None = None

    def __init__(self, config: Any, name: str):
        self.config = config
        self.name = name
        self.report = StepReport(name=name, kind=self.kind)

    @abc.abstractmethod
    def run(self, model: Any, ctx: RunContext) -> Any:
        """Transform ``model``; record what happened in ``self.report.details``."""

    def output_precision(self) -> str | None:
        """The precision of the model this step produces (None: unchanged)."""
        return None


def onnx_output_path(ctx: RunContext, name: str) -> Path:
    return ctx.artifacts_dir / f"{name}.onnx"
