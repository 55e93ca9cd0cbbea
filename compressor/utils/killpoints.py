"""Named points where a test can kill the process (``kill -9``) to prove resume works.

``COMPRESSOR_TEST_KILL_AT=<pattern>`` (fnmatch, e.g. ``step:*:written``) makes the
process SIGKILL itself the first time it passes a matching point. Unset, a
checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV = "COMPRESSOR_TEST_KILL_AT"


def checkpoint(name: str) -> None:
    """SIGKILL this process here when ``$COMPRESSOR_TEST_KILL_AT`` matches ``name``."""
    pattern = os.environ.get(ENV)
    if pattern and fnmatch.fnmatchcase(name, pattern):
        os.kill(os.getpid(), signal.SIGKILL)
