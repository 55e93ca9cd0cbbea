"""Silence third-party chatter (progress lines, INFO logs) around library calls, so
compressor's own output stays readable."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(*loggers: str, stderr: bool = False, ignore_warnings: bool = False) -> Iterator[None]:
    """Raise the named loggers (the root logger when none is named) to ERROR and swallow
    stdout (and stderr with ``stderr=True``) for the duration of the block.

    >>> with quiet("nncf"):          # doctest: +SKIP
    ...     nncf.quantize(model, data)
    """
    targets = [logging.getLogger(n) for n in loggers] or [logging.getLogger()]
    levels = [lg.level for lg in targets]
    for lg in targets:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            if ignore_warnings:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(targets, levels):
            lg.setLevel(level)
