"""The interface of an INT8 technique of the ONNX Runtime engine, and its one registry.

A technique is one module in this package (found and imported by ``compressor/techniques/__init__.py``)
that subclasses :class:`Technique` and registers itself with :func:`register`. Its declaration is
everything the rest of compressor reads about it:

- ``fields``: its recipe key(s) under ``quantize:``, with type, default ("off") and description;
  ``QuantizeConfig`` gets them from here, so they appear in ``compressor recipe schema``;
- ``phase``: where the ORT engine applies it (:data:`PHASES`, in that order);
- what it needs: calibration data (``calibration``), the FP32 model (``fp32_model``), an ONNX
  Runtime session (``runtime``); the engines and modes it supports (a recipe asking for it
  elsewhere is refused with a message built here, never ignored);
- ``trials``: the candidates it adds to the accuracy-aware tuner's list, by rank;
- ``apply``: what it does to the model; ``describe``: the report's words for it.

Example (a technique that does nothing; see docs/quantization.md, "Adding a technique")::

    @register
    class Noop(Technique):
        name = "noop"
        fields = {"noop": (bool, Field(False, description="do nothing (engine onnxruntime)"))}
        phase = "correction"
        order = 90

        def apply(self, cfg, models):
            return {"noop": True}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

Phase = Literal["fp32_rewrite", "weight_rounding", "correction"]
# fp32_rewrite: the FP32 graph, before ORT quantizes it (it depends on the calibration data only,
# so the tuner makes it once); weight_rounding: the integer weights, after ORT chose the scales;
# correction: the quantized model against FP32 (reads the final weights, so it comes last)
PHASES: tuple[Phase, ...] = ("fp32_rewrite", "weight_rounding", "correction")


@dataclass(frozen=True)
class TunerTrial:
    """One candidate of the accuracy-aware tuner: ``settings`` (quantize keys -> values) tried at
    ``rank`` (lower first, cheapest first); ``words`` name it in the ``tune_calibration`` docs."""

    rank: int
    settings: dict[str, Any]
    words: str


@dataclass(frozen=True)
class Models:
    """The models a technique works on. ``fp32``: the FP32 model (the one ORT quantizes, after any
    FP32 rewrite); ``out``: where the result goes: phase ``fp32_rewrite`` writes the rewritten FP32
    model there, the later phases rewrite the quantized model there in place. ``feeds``: calibration
    batches (None without calibration data)."""

    fp32: Path
    out: Path
    feeds: list[dict[str, np.ndarray]] | None


class Technique:
    """One INT8 technique of the ORT engine (see the module docstring)."""

    name: ClassVar[str]
    fields: ClassVar[dict[str, tuple[Any, FieldInfo]]]
    phase: ClassVar[Phase]
    order: ClassVar[int]  # place among the techniques in the schema, messages and the report
    calibration: ClassVar[Literal["required", "optional", "none"]] = "required"
    fp32_model: ClassVar[bool] = True  # reads the FP32 model (phases after fp32_rewrite)
    runtime: ClassVar[bool] = True  # runs ONNX Runtime sessions (statistics on the calibration data)
    engines: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    modes: ClassVar[tuple[str, ...]] = ("static",)
    engine_hints: ClassVar[dict[str, str]] = {}  # engine -> where that engine has the same idea
    trials: ClassVar[tuple[TunerTrial, ...]] = ()

    def active(self, cfg: Any) -> bool:
        """Whether ``cfg`` (a QuantizeConfig) asks for this technique: a key off its default."""
        return any(getattr(cfg, k) != f.default for k, (_, f) in self.fields.items())

    def off(self) -> dict[str, Any]:
        """The settings that turn it off."""
        return {k: f.default for k, (_, f) in self.fields.items()}

    def apply(self, cfg: Any, models: Models) -> dict[str, Any]:
        """Do it (see :class:`Models`); returns what was done, for the step's report details."""
        raise NotImplementedError

    def summary(self, cfg: Any) -> dict[str, Any]:
        """Details recorded for every quantization, applied or not (default: none)."""
        return {}

    def describe(self, details: dict[str, Any]) -> str | None:
        """The report's words for it, from the kept model's details (None: not applied)."""
        return None


_REGISTRY: dict[str, Technique] = {}


def register(cls: type[Technique]) -> type[Technique]:
    """Class decorator: add one instance of ``cls`` to the registry (checked here, once)."""
    t = cls()
    if t.name in _REGISTRY:
        raise ValueError(f"technique {t.name!r} is registered twice")
    if t.phase not in PHASES:
        raise ValueError(f"technique {t.name!r}: phase {t.phase!r} is not one of {', '.join(PHASES)}")
    taken = {k for other in _REGISTRY.values() for k in other.fields}
    for key, (_, f) in t.fields.items():
        if key in taken:
            raise ValueError(f"technique {t.name!r}: recipe key {key!r} belongs to another technique")
        if not f.description:
            raise ValueError(f"technique {t.name!r}: recipe key {key!r} needs a description (the schema's docs)")
    _REGISTRY[t.name] = t
    return cls


def unregister(name: str) -> None:
    """Remove a technique (tests that register their own)."""
    _REGISTRY.pop(name, None)


def techniques() -> list[Technique]:
    """Every registered technique, in ``order`` (the schema's, the messages')."""
    return sorted(_REGISTRY.values(), key=lambda t: (t.order, t.name))


def in_phase_order() -> list[Technique]:
    """Every registered technique in the order the engine applies them."""
    return sorted(_REGISTRY.values(), key=lambda t: (PHASES.index(t.phase), t.order, t.name))


def settings_model(base: type[BaseModel]) -> type[BaseModel]:
    """A pydantic model (subclass of ``base``) with every technique's fields: QuantizeConfig's mixin."""
    fields: dict[str, Any] = {k: v for t in techniques() for k, v in t.fields.items()}
    return create_model("TechniqueSettings", __base__=base, **fields)  # type: ignore[call-overload]


def tuner_trials(base: list[TunerTrial]) -> list[TunerTrial]:
    """``base`` and every technique's trials, by rank (``base`` first on a tie: a stable order)."""
    return sorted([*base, *(tr for t in techniques() for tr in t.trials)], key=lambda tr: tr.rank)


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check(cfg: Any) -> None:
    """Refuse a QuantizeConfig that asks for a technique its engine or mode does not run (ValueError
    with the reason; the recipe loader adds the key path)."""
    other = [t for t in techniques() if cfg.engine not in t.engines]
    on = [t for t in other if t.active(cfg)]
    if on:
        hint = next((t.engine_hints[cfg.engine] for t in on if cfg.engine in t.engine_hints), None)
        engines = sorted({e for t in other for e in t.engines})
        raise ValueError(f"{_words([k for t in other for k in t.fields])} apply to engine {' or '.join(engines)}, "
                         f"not {cfg.engine}" + (f" ({hint})" if hint else ""))
    other = [t for t in techniques() if cfg.mode not in t.modes]
    if any(t.active(cfg) for t in other):
        modes = sorted({m for t in other for m in t.modes})
        why = " (calibration data)" if all(t.calibration == "required" for t in other) else ""
        raise ValueError(f"{_words([k for t in other for k in t.fields])} need mode: {' or '.join(modes)}{why}")


def calibration_error(cfg: Any) -> tuple[str, str] | None:
    """(message, hint) when ``cfg`` asks for a technique that needs calibration data, for a
    quantization that has none (or is dynamic); None when it may run."""
    needy = [t for t in techniques() if t.calibration == "required"]
    if not any(t.active(cfg) for t in needy):
        return None
    off = [f"{k}: {v}" for t in needy for k, v in t.off().items()]
    return (f"{_words([k for t in needy for k in t.fields])} need static quantization with calibration data",
            f"set quantize.mode: static and data.calibration, or {_words(off)}")
