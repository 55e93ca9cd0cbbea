"""A loopback Ray cluster whose two benchmark nodes declare different devices (one with
COMPRESSOR_HOST_DEVICE=x86-64-avx2, one the detected host), joined with `compressor
sweep-node`: `compressor sweep --devices all` measures every variant on each and the report
has one Pareto front, one best variant and the gates per device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.sweep.ray_nodes import NODE_ARGS, cluster_env, free_port, kill_group, start_node, wait_for_nodes

pytest.importorskip("ray")

AVX2 = "x86-64-avx2"


def _detected(env: dict[str, str]) -> str:
    code = "from compressor.sweep.nodes import host_profile; print(host_profile())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def device_cluster(request):
    """Head (1 CPU for the steps, no bench slot) + two benchmark nodes of different devices."""
    plain = {k: v for k, v in cluster_env().items() if k != "COMPRESSOR_HOST_DEVICE"}
    host = _detected(plain)
    # on an AVX2-only machine the detected host is x86-64-avx2 too: give that node a label of its own
    host_label = host if host != AVX2 else "detected-host"
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    request.addfinalizer(lambda: [kill_group(n) for n in reversed(nodes)])
    nodes.append(start_node(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"], plain))
    wait_for_nodes(address, plain, nodes, 1)
    join = [sys.executable, "-m", "compressor", "sweep-node", f"--address={address}", "--block"]
    nodes.append(start_node(["--", *NODE_ARGS[1:]], {**plain, "COMPRESSOR_HOST_DEVICE": AVX2}, join))
    wait_for_nodes(address, plain, nodes, 2)  # two nodes joining at the same moment can collide on ports
    nodes.append(start_node([*(["--device", host_label] if host_label != host else []), "--", *NODE_ARGS[1:]],
                            plain, join))
    wait_for_nodes(address, plain, nodes, 3)
    return address, plain, sorted([AVX2, host_label])


@pytest.mark.slow  # ~100 s on 2 loaded cores: 3 Ray nodes, 2 variants x 2 devices
def test_each_device_gets_its_front_best_variant_and_gates(device_cluster, tiny_recipe, tmp_path, cli):
    address, env, labels = device_cluster
    out = tmp_path / "sweep"
    res = subprocess.run([sys.executable, "-m", "compressor", "sweep", str(tiny_recipe), "--out", str(out),
                          "--grid", "steps[0].quantize.calibration=minmax,percentile", "--devices", "all",
                          "--ray-address", address], env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((out / "report.json").read_text())
    sweep = report["sweep"]
    units = {(v["variant"], v["device"]): v for v in sweep["variants"]}
    assert sorted(units) == [(f"calibration{c}", d) for c in ("minmax", "percentile") for d in labels]
    assert all(u["status"] == "ok" for u in units.values())
    # measured on a node of that device: the avx2 node's tasks detect the profile its env names
    assert {u["detected"] for (_, d), u in units.items() if d == AVX2} == {AVX2}
    for c in ("minmax", "percentile"):
        assert units[(f"calibration{c}", labels[0])]["ray_node"] != units[(f"calibration{c}", labels[1])]["ray_node"]
    # the avx2 variants were compiled for that device (its quantization defaults, not the head's)
    avx2_rows = [r for r in report["results"] if r.get("bench_device") == AVX2 and r["variant"].endswith("/compressed")]
    assert avx2_rows and all(r["device"]["deploy"]["name"] == AVX2 for r in avx2_rows)
    # one Pareto front, one best variant and the gates per device
    assert sorted(sweep["pareto"]) == [f"onnxruntime-cpu@{d}" for d in labels]
    assert all(all(f"/{d}/" in v for v in sweep["pareto"][f"onnxruntime-cpu@{d}"]) for d in labels)
    assert sorted(sweep["best"]) == [f"onnxruntime-cpu@{d}" for d in labels]
    drops = [g["detail"].split("@")[0] for g in report["gates"] if g["name"] == "max_accuracy_drop"]
    assert sorted(drops) == sorted(f"calibration{c}/{d}/compressed" for c in ("minmax", "percentile") for d in labels)
    assert sweep["devices"]["devices"] == labels
    assert "Best variant per device" in (out / "report.md").read_text()
    res = cli("report", "devices", out)
    assert res.exit_code == 0, res.output
    assert all(d in res.output for d in labels) and "one variant for all" in res.output
