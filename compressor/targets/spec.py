"""Target definitions (``targets/*.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from compressor.errors import RecipeError
from compressor.recipe.schema import Strict
from compressor.utils.builtin import builtin_dir

TARGETS_DIR = builtin_dir("targets")   # the built-in targets (packaged, or the checkout's targets/)


class TargetOptions(Strict):
    """A runtime's ``options:`` (each Target class declares its subclass as ``Options``).
    Unknown keys are errors, like everywhere in recipes and target files."""


class TargetSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    runtime: str = Field(description="key in compressor.targets.registry.RUNTIMES")
    device: str = Field("cpu", description="what the target deploys to: cpu (this host, detected), cuda, or a "
                        "device profile such as arm64-dotprod or x86-64-avx2 (compressor.targets.devices.PROFILES)")
    description: str = ""
    precisions: list[Literal["fp32", "fp16", "bf16", "int8"]] = Field(default_factory=lambda: ["fp32", "int8"])
    threads: int | None = Field(None, ge=1, description="overrides benchmark.threads")
    quantization: dict[str, Any] = Field(
        default_factory=dict,
        description="quantize-step settings this runtime wants; they fill in what the step leaves unset",
    )
    quantization_strict: bool = Field(
        False, description="the runtime cannot run other settings: a quantize step that sets one of "
        "these keys to another value is an error, not a silent override",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="runtime-specific options")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        from compressor.targets.devices import check_device_name

        return check_device_name(v)


def search_dirs(extra: list[Path] | None = None) -> list[Path]:
    dirs = [*(extra or []), Path.cwd() / "targets", TARGETS_DIR]
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def load_target_file(path: Path) -> TargetSpec:
    """Load and validate a target file: the keys of TargetSpec, the runtime's typed
    ``options`` and the ``quantization`` settings (the quantize step's model). An error
    names the file, the YAML line and the key."""
    from compressor.recipe.loader import load_yaml, validation_messages
    from compressor.recipe.schema import QuantizeConfig
    from compressor.targets.registry import RUNTIMES, options_model

    data, lines = load_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a target file must be a YAML mapping")
    try:
        spec = TargetSpec.model_validate(data)
    except ValidationError as e:
        raise RecipeError("; ".join(validation_messages(e, lines, str(path))[:3])) from None
    if spec.runtime not in RUNTIMES:
        raise RecipeError(f"{path}:{lines.get(('runtime',), '?')}: runtime: unknown runtime {spec.runtime!r}; "
                          f"known runtimes: {', '.join(sorted(RUNTIMES))}")
    checked = {}
    for section, model in (("options", options_model(spec.runtime)), ("quantization", QuantizeConfig)):
        try:
            checked[section] = model.model_validate(getattr(spec, section))
        except ValidationError as e:
            raise RecipeError("; ".join(validation_messages(e, lines, str(path), prefix=(section,))[:3])) from None
    # keep only the quantization keys the file sets (they fill in what a recipe leaves unset), as validated
    quant = checked["quantization"].model_dump(mode="json", include=set(spec.quantization))
    return spec.model_copy(update={"quantization": quant})


def available_targets(extra_dirs: list[Path] | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in search_dirs(extra_dirs):
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
    return found


def load_target(name_or_path: str, extra_dirs: list[Path] | None = None) -> TargetSpec:
    """Load a target by name (``onnxruntime-cpu``) or by path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_target_file(p)
    found = available_targets(extra_dirs)
    if name_or_path not in found:
        raise RecipeError(
            f"unknown target {name_or_path!r}; valid targets: {', '.join(sorted(found)) or '(none found)'}",
            hint="run `compressor targets list`",
        )
    spec = load_target_file(found[name_or_path])
    if spec.name != name_or_path:
        raise RecipeError(f"{found[name_or_path]}: name {spec.name!r} differs from the file name {name_or_path!r}")
    return spec
