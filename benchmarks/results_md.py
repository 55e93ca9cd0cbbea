"""Keep benchmarks/results/reliability.md as named sections, each rewritten by its script."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "reliability.md"
HEADER = "# Reliability measurements\n\nEach section is written by the script named in it; re-run it to reproduce.\n"


def update_section(key: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``key`` of the results file."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- {key} -->\n## {title}\n\n{body.strip()}\n<!-- /{key} -->\n"
    pattern = re.compile(rf"<!-- {re.escape(key)} -->.*?<!-- /{re.escape(key)} -->\n", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
