"""The run context every step receives: the recipe, the run folder, data splits (loaded
once, on first use), progress, the step cache, and the quantization settings the
pipeline chose for the targets of the model being quantized."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.data import Dataset, fit_to_shape, load_split
from compressor.progress import QUIET, Reporter
from compressor.recipe.schema import Recipe
from compressor.stepcache import StepCache


@dataclass
class RunContext:
    """What steps and targets see of the run."""

    recipe: Recipe
    run_dir: Path
    base_dir: Path | None
    progress: Reporter = QUIET
    resume: bool = False  # reuse finished work found in run_dir (``compressor run --resume``)
    torch_model: Any = None  # the torch model behind the ONNX-domain steps' input (torch-side engines, e.g. INC)
    _cache: dict[str, Dataset] = field(default_factory=dict)
    cache: StepCache | None = None  # finished work on disk (reused with ``resume``)
    # target -> its device's quantization settings and why (a targets.quant_defaults.QuantChoice;
    # typed Any so the context imports nothing above it in the layers)
    quant_choices: dict[str, Any] = field(default_factory=dict)
    # decoder LLMs: the text they are measured and calibrated on and their KV-cache shape
    # (a pipeline.variants.DecoderData, set when the decoder is exported; None for other models)
    decoder: Any = None

    @property
    def artifacts_dir(self) -> Path:
        return self.run_dir / "artifacts"

    @property
    def seed(self) -> int:
        return self.recipe.seed

    def input_shape(self) -> list[int] | None:
        return self.recipe.model.input_shape

    def _data(self, which: str) -> Dataset:
        if which not in self._cache:
            split = getattr(self.recipe.data, which)
            ds = load_split(self.recipe.data.source, split.split, split.samples,
                            seed=self.seed if which == "calibration" else None, base_dir=self.base_dir)
            ds = fit_to_shape(ds, self.input_shape())
            ds.check_finite()
            self._cache[which] = ds
        return self._cache[which]

    def calibration_data(self) -> Dataset:
        return self._data("calibration")

    def evaluation_data(self) -> Dataset:
        return self._data("evaluation")

    def train_data(self) -> Dataset:
        return self._data("train")
