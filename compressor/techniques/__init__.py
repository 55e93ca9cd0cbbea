"""The INT8 techniques of the ONNX Runtime engine, one module each, and their registry.

Every module of this package but ``base`` is a technique that registers itself on import
(:func:`~compressor.techniques.base.register`); importing the package imports them all, so adding
a technique is adding its module (and its tests): the recipe schema, the engine, the tuner and
the report read the registry. See docs/quantization.md, "Adding a technique".
"""

from __future__ import annotations

import importlib
import pkgutil

from compressor.techniques.base import (PHASES, Models, Technique, TunerTrial, calibration_error, check,
                                        in_phase_order, register, settings_model, techniques, tuner_trials,
                                        unregister)

__all__ = ["PHASES", "Models", "Technique", "TunerTrial", "calibration_error", "check", "in_phase_order",
           "register", "settings_model", "techniques", "tuner_trials", "unregister"]

# sorted names: the registry's order comes from each technique's ``order``, never from import order
for _m in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_m}")
