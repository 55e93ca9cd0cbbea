"""The ``distill`` step's settings (compressor/steps/distill/ reads them)."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator

from compressor.recipe.base import Strict
from compressor.recipe.steps.training import TrainingConfig


class ModuleSource(Strict):
    """A second torch model (teacher or student) built from a factory."""

    factory: str = Field(description="file.py:callable or package.module:callable")
    factory_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = Field(None, description=".safetensors or weights-only .pt/.pth")


class HintConfig(Strict):
    student_layer: str
    teacher_layer: str
    weight: float = Field(1.0, gt=0)


class DistillConfig(TrainingConfig):
    teacher: Union[Literal["auto", "before", "original"], ModuleSource] = Field(
        "auto", description="before: the model as it stood before this step; original: the recipe's model; "
        "auto: 'before' for a separate student, 'original' when the student is the current model")
    student: Union[Literal["current"], ModuleSource] = Field(
        "current", description="current: the model so far (e.g. pruned), or a smaller architecture")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft (KL) loss; 1-alpha goes to hard-label CE")
    hint: list[HintConfig] = Field(default_factory=list, description="feature losses between named layers")

    @field_validator("hint", mode="before")
    @classmethod
    def _one_hint(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v


class DistillStep(Strict):
    distill: DistillConfig = DistillConfig()
