"""`compressor device probe`: a torch-free profile of this device's INT8 formats, a saturation
check that catches the AVX2 kernels' 16-bit sums (run under qemu's Haswell model, so it holds on
any x86 host), and profiles read back (and refused when malformed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.errors import RecipeError
from compressor.targets.profiles import load_profile
from compressor.utils.int8_formats import RUNTIME_FORMATS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_probe_writes_a_profile_without_torch(tmp_path):
    out = tmp_path / "host.json"
    script = ("import sys\nfrom compressor.cli.main import main\n"
              "try:\n    main(['device', 'probe', '--out', sys.argv[1], '--rounds', '2', '--no-openvino'])\n"
              "except SystemExit as e:\n    assert not e.code, e.code\n"
              "assert 'torch' not in sys.modules, 'the probe imported torch'\nprint('TORCH-FREE')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH-FREE" in proc.stdout and "INT8 vs FP32 (geometric mean over 5 blocks)" in proc.stdout
    profile = json.loads(out.read_text())
    formats = profile["runtimes"]["onnxruntime"]["formats"]
    assert list(formats) == list(RUNTIME_FORMATS["onnxruntime"])
    for f in formats.values():
        assert f["ratio"] > 0 and set(f["layers"]) == {"conv3x3", "depthwise", "pointwise", "linear", "attention"}
    sat = profile["saturation"]
    assert sat["saturates"] == (sat["observed"] != sat["expected"]) and sat["observed"] <= sat["expected"]
    assert set(profile["int8_mac_ratio"]) == {"U8S8", "U8U8"} and profile["cpu"]["flags"]
    # read back as a declared device
    from compressor.targets.devices import resolve_device

    dev = resolve_device(str(out))
    assert dev.source == "declared" and dev.profile == str(out.resolve()) and dev.arch == "x86_64"
    assert load_profile(out).format_ratios("onnxruntime")["U8U8"] == formats["U8U8"]["ratio"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user is not installed (make installs it)")
def test_saturation_check_catches_the_avx2_kernels_16_bit_sums():
    code = "from compressor.bench.probe import saturation_check; import json; print(json.dumps(saturation_check()))"
    proc = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    sat = json.loads(proc.stdout.strip().splitlines()[-1])
    # every pair of 255 x 127 products saturates at 32767 in VPMADDUBSW's 16-bit sums
    assert sat["saturates"] and sat["observed"] == sat["saturated_value"] == 32767 * 32


def test_a_malformed_profile_is_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cpu": {}}))
    with pytest.raises(RecipeError, match="is not a device profile"):
        load_profile(bad)
    bad.write_text("{")
    with pytest.raises(RecipeError, match="not valid JSON"):
        load_profile(bad)
    with pytest.raises(RecipeError, match="cannot be read"):
        load_profile(tmp_path / "none.json")
