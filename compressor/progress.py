"""Progress bars for long work (calibration, training, benchmarking), on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Reporter:
    """``with reporter.task("calibrating", total=n) as update: update(i)``."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.console = console or Console(stderr=True)
        self.enabled = enabled

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.print(message, highlight=False)

    @contextlib.contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
        if not self.enabled or not self.console.is_terminal:  # no bar animations in CI logs
            yield lambda *a, **k: None
            return
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
                      transient=True) as progress:
            tid = progress.add_task(description, total=total, info="")

            def update(done: int, of: int | None = None, info: str = "") -> None:
                progress.update(tid, completed=done, total=of if of is not None else total, info=info)

            yield update


QUIET = Reporter(enabled=False)
