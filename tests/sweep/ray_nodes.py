"""Helpers for the loopback Ray cluster tests: nodes as `ray start --block` process groups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
# detect a dead node in ~2 s instead of ~30 s
# RAY_AUTH_MODE: `ray start` turns on token authentication (Ray >= 2.5x), which this throwaway
# loopback cluster does not need; a real cluster keeps it (docs/sweep.md)
FAST_HEALTH = {"RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
               "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
NODE_ARGS = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]


def cluster_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **FAST_HEALTH, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str], command: list[str] | None = None) -> subprocess.Popen:
    """``ray start`` (or ``command``, e.g. ``compressor sweep-node``) in the foreground as the
    leader of its own process group, so the node (raylet, its workers; GCS for the head) is
    stopped by its group id alone."""
    cmd = command or [RAY, "start", *NODE_ARGS]
    return subprocess.Popen([*cmd, *args], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=30)


def wait_for_nodes(address: str, env: dict[str, str], nodes: list[subprocess.Popen], n: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run([RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True)
        if out.stdout.count(" node_") >= n:
            return
        assert all(p.poll() is None for p in nodes), "a Ray node exited while starting"
        time.sleep(1)
    pytest.fail(f"{n} Ray node(s) did not come up in 120 s")


def drive_until_first_variant(args: list[str], env: dict[str, str], out: Path, deadline_s: float = 240) -> list[Path]:
    """Start a sweep driver in its own process group, wait until one variant's report.json exists
    (or the driver exits, or ``deadline_s`` passes), then SIGKILL the group, like a crash: the
    driver and the local Ray it started. Returns the variants' report.json files found then."""
    driver = subprocess.Popen(args, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + deadline_s
        while not list(out.glob("variants/*/report.json")) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.1)
        return list(out.glob("variants/*/report.json"))
    finally:
        kill_group(driver)
