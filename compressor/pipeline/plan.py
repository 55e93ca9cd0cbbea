"""The plan before any work: each target with its device, the quantization settings each
(runtime, device) fills in, and the refusal of settings a strict target cannot run."""

from __future__ import annotations

import os
from pathlib import Path

from compressor.errors import CompressorError, RecipeError
from compressor.recipe.schema import QuantizeConfig, Recipe
from compressor.steps.quantize.formats import FORMAT_KEYS, RUNTIME_FORMATS, decide, from_profile
from compressor.targets.devices import Device, resolve_device
from compressor.targets.profiles import find_profile, is_profile_name, load_profile
from compressor.targets.quant_defaults import QuantChoice, resolve_quantization
from compressor.targets.spec import TargetSpec, load_target

#: overrides the default of ``quantize.choose`` (measure) for recipes that do not set it
CHOOSE_ENV = "COMPRESSOR_QUANT_CHOOSE"


def resolve_targets(recipe: Recipe, base_dir: Path | None) -> list[TargetSpec]:
    """The recipe's targets, each with the device it deploys to (``devices:`` wins over the
    target file's ``device:``); an unknown target or device is an error before any work."""
    extra = [base_dir / "targets", base_dir.parent / "targets"] if base_dir else None
    specs = []
    for name in recipe.targets:
        spec = load_target(name, extra)
        if name in recipe.devices:
            spec = spec.model_copy(update={"device": recipe.devices[name]})
        if is_profile_name(spec.device):  # a measured profile file, found beside the recipe or here
            search = [base_dir, base_dir.parent] if base_dir else []
            spec = spec.model_copy(update={"device": find_profile(str(spec.device), [*search, Path.cwd()])})
        resolve_device(spec.device)  # RecipeError naming the known devices
        specs.append(spec)
    return specs


def target_device(spec: TargetSpec) -> Device:
    return resolve_device(spec.device)


def quantization_plan(recipe: Recipe, targets: list[TargetSpec]) -> dict[str, QuantChoice]:
    """For each target: the quantize settings its (runtime, device) fills in where the recipe
    is silent, the reason, and warnings for explicit settings known to be wrong there. Keys
    that every quantize step sets explicitly are the recipe's, not the target's."""
    cfgs = [spec.quantize for kind, spec in zip(recipe.step_kinds(), recipe.steps) if kind == "quantize"]
    if not cfgs:
        return {}
    explicit_keys = set.intersection(*(set(c.model_fields_set) for c in cfgs))
    explicit = {k: getattr(cfgs[0], k) for k in explicit_keys}
    explicit.setdefault("mode", cfgs[0].mode)
    out = {}
    for t in targets:
        choice = resolve_quantization(t.runtime, target_device(t), t.quantization, explicit)
        out[t.name] = how_chosen(choice, t, target_device(t), cfgs[0], explicit)
    return out


def _runs_here(spec: TargetSpec) -> bool:
    """Whether the target's runtime is installed here (a missing one fails later, as its result)."""
    from compressor.targets.registry import target_class

    try:
        return target_class(spec.runtime).unavailable_reason() is None
    except CompressorError:
        return False


def default_choose() -> str:
    value = os.environ.get(CHOOSE_ENV, "measure")
    if value not in ("measure", "table"):
        raise RecipeError(f"{CHOOSE_ENV}={value!r}: expected measure or table")
    return value


def how_chosen(choice: QuantChoice, spec: TargetSpec, device: Device, cfg: QuantizeConfig,
               explicit: dict[str, object]) -> QuantChoice:
    """Where ``choice``'s INT8 format comes from: pinned by the recipe or the target file;
    ranked by the device's measured profile; measured on this host by the quantize step; or
    the table (unmeasured)."""
    choice.spec, choice.device = spec, device
    if any(k in explicit for k in FORMAT_KEYS) or any(k in spec.quantization for k in FORMAT_KEYS):
        choice.choose = "pinned"
        return choice
    if device.profile:
        prof = load_profile(device.profile)
        cands = from_profile(prof.format_ratios(spec.runtime), prof.saturates, spec.runtime)
        if cands:
            d = decide(cands, where=f"{spec.name} ({prof.describe()})", source="profile")
            d.measured_on = prof.describe()
            choice.choose, choice.decision = "profile", d.to_dict()
            choice.settings = {**choice.settings, **d.settings}
            choice.reason = f"ranked by the device profile {prof.describe()}: {d.line}"
            return choice
    measurable = (device.source == "detected" and spec.runtime in RUNTIME_FORMATS and cfg.engine == "onnxruntime"
                  and cfg.mode == "static" and _runs_here(spec))
    if (cfg.choose or default_choose()) == "measure" and measurable:
        choice.choose = "measure"
        return choice
    choice.choose = "table"
    choice.reason = "table (unmeasured): " + choice.reason
    return choice


def check_target_quantization(recipe: Recipe, targets: list[TargetSpec]) -> None:
    """A strict target (TensorRT: S8/S8 symmetric) cannot run other quantization settings:
    refuse a quantize step that sets one of its keys to another value, before any work."""
    for kind, spec in zip(recipe.step_kinds(), recipe.steps):
        if kind != "quantize":
            continue
        cfg = spec.quantize
        for t in targets:
            if not t.quantization_strict:
                continue
            clash = {k: (getattr(cfg, k), v) for k, v in t.quantization.items()
                     if k in cfg.model_fields_set and getattr(cfg, k) != v}
            if clash:
                got = ", ".join(f"{k}: {mine} (needs {need})" for k, (mine, need) in clash.items())
                raise RecipeError(f"quantize sets {got}, which target {t.name!r} cannot run",
                                  hint=f"drop these keys from the quantize step (the target sets them) or remove {t.name!r}")


def consumes(spec: TargetSpec) -> str:
    from compressor.targets.registry import target_class

    try:
        return target_class(spec.runtime).consumes
    except CompressorError:
        return "onnx"  # an unknown runtime fails later, as that target's result
