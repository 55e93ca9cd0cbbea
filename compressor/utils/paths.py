from __future__ import annotations

from pathlib import Path


def resolve_path(p: str | Path, base_dir: Path | None) -> Path:
    """A recipe path: absolute, else relative to the working folder when it exists
    there, else relative to the recipe's folder."""
    p = Path(p).expanduser()
    if p.is_absolute() or p.exists() or base_dir is None:
        return p
    candidate = base_dir / p
    return candidate if candidate.exists() else p
