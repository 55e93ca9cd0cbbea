"""A real Ray cluster on loopback: a head and a worker node as separate processes. The
worker node is killed (SIGKILL to its whole process group) while it runs a variant's task;
the task is retried on the head and the variant counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

pytest.importorskip("ray")

from tests.sweep.ray_nodes import REPO, cluster_env, drive_until_first_variant, free_port as _free_port, \
    kill_group as _kill_group, start_node as _start_node, wait_for_nodes as _wait_for_nodes


@pytest.fixture
def cluster(request):
    env = cluster_env()
    port = _free_port()
    nodes: list[subprocess.Popen] = []
    request.addfinalizer(lambda: [_kill_group(n) for n in reversed(nodes)])
    nodes.append(_start_node(["--head", f"--port={port}", "--num-cpus=1", '--resources={"bench": 1}',
                              "--include-dashboard=false"], env))
    address = f"127.0.0.1:{port}"
    _wait_for_nodes(address, env, nodes, 1)
    nodes.append(_start_node([f"--address={address}", "--num-cpus=1", '--resources={"bench": 1}'], env))
    _wait_for_nodes(address, env, nodes, 2)
    return address, nodes[1], env


def _tasks_of(node: subprocess.Popen) -> set[int]:
    return {c.pid for c in psutil.Process(node.pid).children(recursive=True)}


@pytest.mark.slow
def test_killed_worker_node_task_is_retried_and_counted_once(cluster, tiny_recipe, tmp_path):
    address, worker, env = cluster
    out = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-m", "compressor", "sweep", str(tiny_recipe), "--out", str(out),
                               "--grid", "steps[0].quantize.calibration=minmax,percentile",
                               "--ray-address", address, "--max-retries", "3"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            pids = _tasks_of(worker)
            for log in out.glob("variants/*/sweep_attempts.jsonl"):
                for a in map(json.loads, log.read_text().splitlines()):
                    if a["pid"] in pids:
                        victim = (log.parent.name, a["phase"])
            time.sleep(0.2)
        assert victim is not None, "no variant task started on the worker node"
        _kill_group(worker)  # the node dies mid-task: raylet, its workers, the running task
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    report = json.loads((out / "report.json").read_text())
    name, phase = victim
    entry = next(v for v in report["sweep"]["variants"] if v["name"] == name)
    assert entry["status"] == "ok" and entry["attempts"][phase] == 2  # killed once, retried once
    # every variant once: (baseline, compressed) x 1 target each, no row twice
    keys = [(r["variant"], r["target"]) for r in report["results"]]
    assert len(keys) == len(set(keys)) == 4 and all(r["status"] == "ok" for r in report["results"])
    # each variant's rows were all measured by one attempt, on one node
    for v in report["sweep"]["variants"]:
        assert len({r.get("ray_node") for r in report["results"] if r["variant"].startswith(v["name"] + "/")}) == 1


@pytest.mark.slow
def test_resume_after_kill_9_of_the_driver_redoes_no_finished_variant(tiny_recipe, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "compressor", "sweep", str(tiny_recipe), "--out", str(out), "--num-cpus", "1",
            "--grid", "steps[0].quantize.calibration=minmax,percentile"]
    finished = [p.parent.name for p in drive_until_first_variant(args, env, out)]
    assert len(finished) == 1, f"expected to kill the driver with 1 variant finished, found {finished}"
    assert not (out / "report.json").exists()
    done = out / "variants" / finished[0]
    before = ((done / "report.json").stat().st_mtime_ns, (done / "sweep_attempts.jsonl").read_text())
    res = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 of 2 variant(s) finished before: not redone" in res.stdout
    assert ((done / "report.json").stat().st_mtime_ns, (done / "sweep_attempts.jsonl").read_text()) == before
    report = json.loads((out / "report.json").read_text())
    assert [v["status"] for v in report["sweep"]["variants"]] == ["ok", "ok"] and len(report["results"]) == 4
