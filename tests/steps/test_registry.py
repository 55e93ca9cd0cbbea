"""The step kinds have one source, the recipe's STEP_TYPES: every kind has exactly one step
class, which imports, has that kind, and takes that config (Olive's "import every pass" test)."""

from __future__ import annotations

import importlib

import pytest

from compressor.recipe.schema import LLM_STEPS, STEP_TYPES
from compressor.steps.base import Step
from compressor.steps.registry import STEPS


def test_every_recipe_step_kind_has_a_step_and_no_other():
    assert set(STEPS) == set(STEP_TYPES)
    assert set(LLM_STEPS) <= set(STEP_TYPES)   # decoder-LLM steps run through the same flow


@pytest.mark.parametrize("kind", sorted(STEPS))
def test_registered_step_imports_and_matches_its_kind(kind):
    module, _, name = STEPS[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Step) and cls.kind == kind and cls.domain in ("torch", "onnx")
    config = cls.__annotations__["config"]  # a string: the step modules use postponed annotations
    assert eval(config, vars(importlib.import_module(module))) is STEP_TYPES[kind].model_fields[kind].annotation
    assert not getattr(cls.apply, "__isabstractmethod__", False), f"{name} implements no apply()"
