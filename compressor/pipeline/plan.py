"""The plan before any work: each target with its device, the quantization settings each
(runtime, device) fills in, and the refusal of settings a strict target cannot run."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import CompressorError, RecipeError
from compressor.recipe.schema import Recipe
from compressor.targets.devices import Device, resolve_device
from compressor.targets.quant_defaults import QuantChoice, resolve_quantization
from compressor.targets.spec import TargetSpec, load_target


def resolve_targets(recipe: Recipe, base_dir: Path | None) -> list[TargetSpec]:
    """The recipe's targets, each with the device it deploys to (``devices:`` wins over the
    target file's ``device:``); an unknown target or device is an error before any work."""
    extra = [base_dir / "targets", base_dir.parent / "targets"] if base_dir else None
    specs = []
    for name in recipe.targets:
        spec = load_target(name, extra)
        if name in recipe.devices:
            spec = spec.model_copy(update={"device": recipe.devices[name]})
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
    return {t.name: resolve_quantization(t.runtime, target_device(t), t.quantization, explicit) for t in targets}


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
