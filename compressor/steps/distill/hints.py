"""Hint (feature) losses between named layers, captured with forward hooks.

Where the student's feature map has fewer channels than the teacher's (a pruned or
smaller student), a learned 1x1 convolution (or a Linear layer for 2-D features)
maps the student's features to the teacher's width before the MSE.
"""

from __future__ import annotations

import difflib
from typing import Any

from compressor.errors import RecipeError, StepError
from compressor.recipe.steps.distill import HintConfig


def find_module(model: Any, name: str, key: str) -> Any:
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
    raise RecipeError(f"{key}: the model has no layer {name!r}" + (f" (close names: {', '.join(close)})" if close else ""),
                      hint="use a module name from model.named_modules(), e.g. 'layer3' or 'layer3.conv2'")


class FeatureTap:
    """Keeps the latest output of one module (a forward hook)."""

    def __init__(self, module: Any):
        self.value: Any = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        self.value = output[0] if isinstance(output, (tuple, list)) else output

    def remove(self) -> None:
        self.handle.remove()


class Hint:
    """One hint: student tap, teacher tap, adapter and weight."""

    def __init__(self, cfg: HintConfig, i: int, student: Any, teacher: Any):
        self.cfg = cfg
        self.student = FeatureTap(find_module(student, cfg.student_layer, f"distill.hint[{i}].student_layer"))
        self.teacher = FeatureTap(find_module(teacher, cfg.teacher_layer, f"distill.hint[{i}].teacher_layer"))
        self.adapter: Any = None

    def build_adapter(self) -> Any:
        """After one forward pass of both models: an adapter where the widths differ."""
        import torch
        from torch import nn

        s, t = self.student.value, self.teacher.value
        if not isinstance(s, torch.Tensor) or not isinstance(t, torch.Tensor):
            raise StepError(f"distill hint: layer {self.cfg.student_layer!r} or {self.cfg.teacher_layer!r} did not produce a tensor")
        if s.dim() != t.dim() or s.dim() not in (2, 4) or (s.dim() == 4 and s.shape[2:] != t.shape[2:]):
            raise StepError(
                f"distill hint: student layer {self.cfg.student_layer!r} gives {list(s.shape[1:])} but teacher layer "
                f"{self.cfg.teacher_layer!r} gives {list(t.shape[1:])}; only the channel count may differ",
                hint="pick layers at the same spatial resolution",
            )
        if s.shape[1] == t.shape[1]:
            self.adapter = nn.Identity()
        elif s.dim() == 4:
            self.adapter = nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False)
        else:
            self.adapter = nn.Linear(s.shape[1], t.shape[1], bias=False)
        return self.adapter

    def loss(self) -> Any:
        import torch

        return self.cfg.weight * torch.nn.functional.mse_loss(self.adapter(self.student.value), self.teacher.value.detach())

    def remove(self) -> None:
        self.student.remove()
        self.teacher.remove()
