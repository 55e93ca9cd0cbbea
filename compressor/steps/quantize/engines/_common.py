"""Helpers the NNCF and INC engines share."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.metrics import metric_info
from compressor.errors import StepError
from compressor.recipe.steps.quantize import QuantizeConfig
from compressor.steps.quantize.engines import QuantizeEngine
from compressor.steps.quantize.tuning import Trial, Tuner, ort_latency_ms, ort_outputs
from compressor.utils.quiet import quiet

if TYPE_CHECKING:
    from compressor.context import RunContext


def quiet_engines():
    """NNCF and INC print progress bars and INFO lines; keep the CLI output clean."""
    return quiet("nncf", "neural_compressor", "torch.onnx", "torch.export", stderr=True)


def higher_is_better(tuner: Tuner | None, engine: str) -> None:
    """NNCF's and INC's accuracy control maximise the metric."""
    if tuner is not None and not metric_info(tuner.evaluator.metric).higher_is_better:
        raise StepError(f"engine {engine!r} tunes only higher-is-better metrics, not {tuner.evaluator.metric!r}",
                        hint="use engine: onnxruntime for mse, or a metric such as cosine")


def record(tuner: Tuner, path: Path, label: str, ctx: RunContext, fallback: list[str]) -> Trial:
    """Score an engine's candidate on the tuner's data and add it to the history."""
    threads = ctx.recipe.benchmark.threads
    with tuner.running(label):
        value, scores = tuner.evaluator.evaluate(ort_outputs(path, tuner.evaluator.data, threads))
        lat = ort_latency_ms(path, tuner.evaluator.data, threads, tuner.criterion.latency_iterations)
    return tuner.record(label, value, path=path, latency_ms=lat, fallback=fallback, excluded=fallback, scores=scores)


class OneFunctionEngine(QuantizeEngine):
    """An engine whose plain PTQ and accuracy control are one routine (no tuner = plain PTQ)."""

    def quantize(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext) -> dict[str, Any]:
        return self.run(model, dst, cfg, ctx, None)

    def tune(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner) -> dict[str, Any]:
        return self.run(model, dst, cfg, ctx, tuner)

    @abstractmethod
    def run(self, model: Path, dst: Path, cfg: QuantizeConfig, ctx: RunContext, tuner: Tuner | None) -> dict[str, Any]:
        """Quantize ``model`` into ``dst``; under ``tuner``'s criterion when one is given."""
