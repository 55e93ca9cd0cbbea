"""A compiled artifact's record beside it (``<variant>.artifact.json``), so a later step of
the run (paired timing) can load it again without compiling."""

from __future__ import annotations

from pathlib import Path

from compressor.errors import TargetFailed
from compressor.targets.base import Artifact
from compressor.utils.io import atomic_write_json


def write_artifact_record(artifact: Artifact, path: Path, run_dir: Path) -> Path:
    """``<variant>.artifact.json`` beside a compiled artifact: what loading it again needs
    (its files and the target's metadata, e.g. ExecuTorch's input names)."""
    rel = lambda p: str(Path(p).resolve().relative_to(run_dir.resolve()))  # noqa: E731
    return atomic_write_json(path, {"path": rel(artifact.path), "precision": artifact.precision,
                                    "files": [rel(f) for f in artifact.files], "meta": artifact.meta})


def read_artifact_record(path: Path, run_dir: Path) -> Artifact:
    import json

    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TargetFailed(f"cannot read {path.name}: {e}", hint="re-run without --resume") from None
    return Artifact(run_dir / rec["path"], rec["precision"], [run_dir / f for f in rec["files"]], rec.get("meta", {}))
