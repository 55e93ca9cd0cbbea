"""The interface every target implements: compile, load, run, describe."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import ValidationError

from compressor.errors import RecipeError
from compressor.targets.spec import TargetOptions, TargetSpec


@dataclass
class ModelArtifact:
    """A model variant handed to a target: an ONNX file, and for torch-consuming
    targets (ExecuTorch) the torch model it was exported from."""

    variant: str
    precision: str
    onnx_path: Path | None
    input_names: list[str]
    torch_model: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    """What a target compiled: the file(s) its runtime loads."""

    path: Path
    precision: str
    files: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.files or [self.path]) if f.exists())


class Session(Protocol):
    """A loaded artifact. Optionally also ``bind(feeds) -> Callable[[], object]``: a call
    that runs inference on inputs bound once, for latency timing (what the runtimes' own
    benchmark tools time); without it the benchmark times ``run(feeds)``."""

    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def timed_call(session: Session, feeds: dict[str, np.ndarray]):
    """The zero-argument call the latency loop times for ``session`` on ``feeds``."""
    bind = getattr(session, "bind", None)
    return bind(feeds) if bind is not None else (lambda: session.run(feeds))


def parse_options(model: type[TargetOptions], options: dict[str, Any], owner: str) -> Any:
    """``options`` as ``model``; a bad key or value is one RecipeError line. Target files are
    checked with their YAML line when loaded; this covers options built in code."""
    try:
        return model.model_validate(options)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in ("options", *err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else " ".join(str(err["msg"]).split())
        raise RecipeError(f"{owner}: {where}: {msg}") from None


class Target(abc.ABC):
    """Base class for targets. Subclasses live in one module each and are listed in
    ``compressor.targets.registry.RUNTIMES``; they must not import their runtime at
    module import time (so ``compressor --help`` stays fast)."""

    #: what ``compile`` consumes: an ONNX file, or the torch model
    consumes: ClassVar[Literal["onnx", "torch"]] = "onnx"
    #: the largest batch a compiled artifact accepts (None = any)
    max_batch: ClassVar[int | None] = None
    #: the typed ``options:`` of this runtime's target files (no options by default)
    Options: ClassVar[type[TargetOptions]] = TargetOptions

    def __init__(self, spec: TargetSpec):
        self.spec = spec
        self.options = parse_options(self.Options, spec.options, f"target {spec.name}")

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when the runtime can be used here, else why not and how to fix it."""

    @abc.abstractmethod
    def compile(self, model: ModelArtifact, out_dir: Path, *, precision: str) -> Artifact:
        """Turn ``model`` into this runtime's artifact under ``out_dir``."""

    @abc.abstractmethod
    def load(self, artifact: Artifact, *, threads: int) -> Session:
        """Load a compiled artifact into a ready-to-run session."""

    def runtime_versions(self) -> dict[str, str]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.spec.name, "runtime": self.spec.runtime, "device": self.spec.device,
                "versions": self.runtime_versions()}

    def emulation_settings(self, threads: int) -> dict[str, Any] | None:
        """The ONNX Runtime session settings an emulated arm64 run of this target's artifacts uses
        (``threads``, ``graph_optimization_level``, ``disabled_optimizers``, ``config``), or None
        where this runtime has no arm64 emulation (compressor/bench/arm64_score.py)."""
        return None

    def accuracy_emulation(self, precision: str) -> str | None:
        """The qemu CPU model whose kernels should score this target's ``precision`` artifacts
        (an arm64 device declared for an arm64 runtime build), or None: this host's kernels."""
        return None

    def precision_for(self, variant_precision: str) -> str:
        """The precision this target runs a variant at (e.g. OpenVINO fp32 -> f32)."""
        return variant_precision
