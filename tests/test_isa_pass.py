"""The ``isa`` pass (tests/isa.py): the tests marked ``isa`` run again on the AVX2 kernel path,
under ``qemu-x86_64 -cpu Haswell``, and a deliberately VNNI-only expectation
(tests/isa_canary.py) must fail there. Runs inside ``make test`` like any other test."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compressor.targets.devices import host_device, read_cpuinfo
from tests.isa import EMULATED_CPU, EMULATED_PROFILE, FIXTURES_ENV, isa_test_files

ROOT = Path(__file__).resolve().parent.parent
CANARY = "tests/isa_canary.py"
HOST = host_device(*read_cpuinfo())  # the real CPU, whatever COMPRESSOR_HOST_DEVICE says


def _skip_reason() -> str | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the isa pass emulates x86 CPUs; this machine is {platform.machine()}"
    if not HOST.int8_dot:
        return (f"this CPU ({HOST.model}, {HOST.label}) runs the AVX2 kernel path natively, so the main pass ran "
                "the isa tests on it; the VNNI path needs a VNNI machine (qemu cannot emulate AVX-512)")
    if shutil.which("qemu-x86_64") is None:
        return "qemu-user is not installed (make installs it when run as root): the AVX2 kernel path is not tested"
    return None


def _outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed | failed | skipped, from pytest's JUnit XML."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        state = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        out[f"{case.get('classname')}::{case.get('name')}"] = state
    return out


def test_the_canary_holds_on_this_host():
    # the canary is a real expectation of a VNNI host, so its failure under emulation means something
    if not HOST.int8_dot:
        pytest.skip(f"this CPU ({HOST.label}) has no VNNI: the canary's exact U8S8 result is a VNNI-only expectation")
    from tests.isa_canary import test_u8s8_kernels_give_the_exact_integer_result
    test_u8s8_kernels_give_the_exact_integer_result()


def test_isa_tests_hold_on_the_avx2_kernel_path(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    files = [str(p.relative_to(ROOT)) for p in isa_test_files(ROOT / "tests")]
    assert files, "no test carries the isa marker"
    fixtures = tmp_path / "fixtures"
    # torch-built models natively first: training and export under emulation would take minutes
    built = subprocess.run([sys.executable, "-m", "tests.isa", "build", str(fixtures)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"building the isa fixtures natively failed:\n{built.stderr[-3000:]}"
    junit = tmp_path / "isa.xml"
    env = {**os.environ, FIXTURES_ENV: str(fixtures), "COMPRESSOR_HOST_DEVICE": EMULATED_PROFILE,
           "COMPRESSOR_EMULATED_CPU": EMULATED_CPU, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = ["qemu-x86_64", "-cpu", EMULATED_CPU, sys.executable, "-m", "pytest", "-q", "-p", "no:xdist",
           "-p", "no:cacheprovider", "-m", "isa", f"--junitxml={junit}", "--basetemp", str(tmp_path / "t"),
           *files, CANARY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = "\n".join(line for line in proc.stdout.splitlines() if "TCG doesn't support" not in line)
    assert junit.is_file(), f"the emulated pass did not run:\n{log[-3000:]}\n{proc.stderr[-2000:]}"
    outcomes = _outcomes(junit)
    canary = {k: v for k, v in outcomes.items() if "isa_canary" in k}
    assert canary and set(canary.values()) == {"failed"}, (
        f"the VNNI-only canary did not fail under {EMULATED_CPU}: the pass does not reach the AVX2 kernels\n{canary}")
    tested = {k: v for k, v in outcomes.items() if k not in canary}
    failed = sorted(k for k, v in tested.items() if v == "failed")
    assert tested and not failed, (f"isa tests that fail on the AVX2 kernel path ({EMULATED_CPU} under qemu, "
                                   f"COMPRESSOR_HOST_DEVICE={EMULATED_PROFILE}): {failed}\n{log[-6000:]}")
