"""The ``isa`` pass: tests whose expectations depend on the CPU's INT8 kernel path run a
second time on the other path.

INT8 kernels differ by instruction set: ONNX Runtime's x86 U8S8 kernels multiply-add byte
pairs into saturating 16-bit sums unless the CPU has VNNI, so an exact comparison written on
a VNNI machine can fail on an AVX2-only one (issue #20: two such tests broke ``make test`` on
an AMD Zen 1). Tests that run INT8 kernels and assert on their output carry
``@pytest.mark.isa``. On a VNNI/AMX host, ``tests/test_isa_pass.py`` runs them again under
``qemu-x86_64 -cpu Haswell`` (AVX2, no VNNI: ONNX Runtime and OpenVINO pick their kernels
from the emulated CPUID) with ``COMPRESSOR_HOST_DEVICE=x86-64-avx2`` (the quantization
defaults of that CPU), together with ``tests/isa_canary.py``, a deliberately VNNI-only
expectation that must fail there: the proof that the pass sees the other kernels. On an
AVX2-only host the main pass already runs the AVX2 path; qemu cannot emulate AVX-512, so
there the VNNI path is left to VNNI machines.

Models built with torch (slow under emulation) are built natively first: a test fixture
that calls :func:`prebuilt` with a builder registered by :func:`register_isa_fixture` reads
the file the native build wrote (``COMPRESSOR_ISA_FIXTURES``) instead of training again.

Run the pass alone:  ``.venv/bin/python -m pytest -n 0 tests/test_isa_pass.py``
Build the fixtures:  ``.venv/bin/python -m tests.isa build DIR``
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Callable

#: folder of natively built fixture files, set for the emulated pass
FIXTURES_ENV = "COMPRESSOR_ISA_FIXTURES"
#: modules that register isa fixtures (imported by ``build``)
FIXTURE_MODULES = ("tests.depthwise_fixtures",)
#: the qemu CPU model and the device profile of the other kernel path
EMULATED_CPU, EMULATED_PROFILE = "Haswell", "x86-64-avx2"

_BUILDERS: dict[str, Callable[[Path], Path]] = {}


def register_isa_fixture(name: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    """Register ``build(folder) -> path`` as the builder of the fixture file ``name``."""

    def deco(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        _BUILDERS[name] = build
        return build

    return deco


def prebuilt(name: str, tmp_path_factory) -> Path:
    """The fixture file ``name``: read from ``$COMPRESSOR_ISA_FIXTURES`` in the emulated pass;
    otherwise built once per test run, shared by every module and pytest-xdist worker that asks
    (the depthwise net trains in float64: about 30 s on 2 idle cores, minutes when five modules
    each trained it beside the other worker)."""
    from filelock import FileLock

    folder = os.environ.get(FIXTURES_ENV)
    if folder:
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"isa fixture {name} was not built natively into {folder} "
                                    f"(add its module to tests.isa.FIXTURE_MODULES)")
        return path
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder under xdist
    target = shared / "isa-fixtures"
    with FileLock(str(shared / f"isa-fixture-{name}.lock")):
        path = target / name
        if not path.is_file():
            target.mkdir(parents=True, exist_ok=True)
            path = _BUILDERS[name](target)
    return path


def build_all(folder: Path) -> list[Path]:
    """Build every registered fixture into ``folder`` (natively, before the emulated pass)."""
    for module in FIXTURE_MODULES:
        importlib.import_module(module)
    folder.mkdir(parents=True, exist_ok=True)
    return [build(folder) for build in _BUILDERS.values()]


def isa_test_files(root: Path) -> list[Path]:
    """The test files that carry the ``isa`` marker (the emulated pass collects only these:
    importing the whole suite under qemu would cost minutes)."""
    return sorted(p for p in root.rglob("test_*.py") if "mark.isa" in p.read_text(encoding="utf-8"))


if __name__ == "__main__":  # python -m tests.isa build DIR
    if len(sys.argv) != 3 or sys.argv[1] != "build":
        sys.exit("usage: python -m tests.isa build DIR")
    # the registry lives in the module ``tests.isa``, not in this ``__main__`` copy of it
    from tests.isa import build_all as _build_all

    for p in _build_all(Path(sys.argv[2])):
        print(p)
