"""Malicious and broken model files: refused with one clear line, payload never runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.errors import ModelLoadError
from compressor.models.inspect import inspect_model, pickle_globals
from compressor.models.weights import load_state_dict
from tests.reliability_fixtures import malicious_files, tiny_recipe_dict, write_tiny_model

_register()

# Unpickles each file with the real, unrestricted unpickler: proves each payload is live.
_DETONATE = """
import pickle, sys, torch
for p in sys.argv[1:]:
    try:
        torch.load(p, weights_only=False)
    except Exception:
        with open(p, 'rb') as f:
            pickle.load(f)
"""


@pytest.fixture(scope="module")
def evil(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    root = tmp_path_factory.mktemp("evil")
    markers = root / "markers"
    markers.mkdir()
    return malicious_files(root / "files", markers), markers


def test_payloads_are_real(evil, tmp_path):
    """Control: unrestricted unpickling of copies of the files does create every marker."""
    files, _ = evil
    markers = tmp_path / "m"
    copies = malicious_files(tmp_path / "copies", markers)
    markers.mkdir()
    subprocess.run([sys.executable, "-c", _DETONATE, *map(str, copies.values())], check=False,
                   capture_output=True, timeout=120)
    assert sorted(p.name for p in markers.iterdir()) == sorted(f"{n}.pwned" for n in copies)


def test_weights_loader_refuses_without_executing(evil):
    files, markers = evil
    for name, path in files.items():
        with pytest.raises(ModelLoadError) as e:
            load_state_dict(path)
        msg = str(e.value)
        assert "\n" not in msg
        assert "safetensors" in msg or "cannot read" in msg, msg
    assert list(markers.iterdir()) == []


def test_inspect_flags_payload_without_executing(evil):
    files, markers = evil
    runner = CliRunner()
    expected = {"open_zip.pt": "io.open", "system_zip.pth": "system", "exec_zip.bin": "builtins.exec",
                "subprocess_zip.pt": "subprocess.call", "system_legacy.pt": "system",
                "raw_pickle.pth": "io.open", "raw_pickle4.pt": "builtins.exec"}
    for name, path in files.items():
        res = runner.invoke(cli, ["inspect", str(path)])
        assert res.exit_code == 2, (name, res.output)
        assert "would execute" in res.output and expected[name] in res.output, (name, res.output)
        assert "Fix:" in res.output and "safetensors" in res.output
        res = runner.invoke(cli, ["inspect", "--json", str(path)])
        info = json.loads(res.output)
        assert res.exit_code == 2 and info["safe"] is False
    assert list(markers.iterdir()) == []


def test_run_refuses_malicious_weights(evil, tmp_path):
    files, markers = evil
    write_tiny_model(tmp_path)
    for name in ("open_zip.pt", "system_legacy.pt", "raw_pickle.pth"):
        recipe = tmp_path / f"{name}.yaml"
        r = tiny_recipe_dict()
        r["model"]["weights"] = str(files[name])
        recipe.write_text(yaml.safe_dump(r))
        res = CliRunner().invoke(cli, ["run", str(recipe), "--out", str(tmp_path / f"run-{name}"), "-q"])
        assert res.exit_code == 2, res.output
        line = [x for x in res.output.splitlines() if x.startswith("Error:")]
        assert len(line) == 1 and "safetensors" in line[0], res.output
        assert not (tmp_path / f"run-{name}" / "report.json").exists()
    assert list(markers.iterdir()) == []


def test_stack_global_through_memo_is_resolved():
    import pickle

    class P:
        def __reduce__(self):
            return (os.system, ("true",))

    names = pickle_globals(pickle.dumps([P(), P()], protocol=4))
    assert names and all(n.endswith(".system") for n in names)


# ----------------------------------------------------------------------------- broken files


def _good_safetensors(path: Path) -> Path:
    from safetensors.numpy import save_file

    save_file({"w": np.ones((3, 4), np.float32), "b": np.zeros(3, np.float32)}, str(path))
    return path


def test_corrupt_and_truncated_files(tmp_path):
    good = _good_safetensors(tmp_path / "good.safetensors")
    cases = {}
    cases["truncated.safetensors"] = good.read_bytes()[:-10]
    cases["corrupt.safetensors"] = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"
    cases["tiny.safetensors"] = b"\x01\x02"
    cases["empty.pt"] = b""
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/version", "3")
    cases["nodatapkl.pt"] = buf.getvalue()
    torch_ok = tmp_path / "ok.pt"
    import torch

    torch.save({"w": torch.ones(2)}, torch_ok)
    cases["truncated.pt"] = torch_ok.read_bytes()[: len(torch_ok.read_bytes()) // 2]
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ModelLoadError) as e:
            load_state_dict(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value), (name, str(e.value))
        res = CliRunner().invoke(cli, ["inspect", str(p)])
        # a corrupt file is either reported as what it is (zip, unknown) or refused in one line
        assert res.exception is None or isinstance(res.exception, SystemExit), (name, res.exception)
        if res.exit_code != 0:
            assert res.output.count("Error:") == 1, (name, res.output)


def test_inspect_safe_files(tmp_path):
    import torch

    st = inspect_model(_good_safetensors(tmp_path / "a.safetensors"))
    assert st["format"] == "safetensors" and st["safe"] and st["tensor_count"] == 2 and st["parameters"] == 15
    assert st["tensor_bytes"] == 60
    torch.save({"w": torch.ones(2, 3), "b": torch.zeros(2, dtype=torch.float16)}, tmp_path / "sd.pt")
    pt = inspect_model(tmp_path / "sd.pt")
    assert pt["format"] == "torch-zip" and pt["safe"], pt
    assert {t["name"]: t["shape"] for t in pt["tensors"]} == {"w": [2, 3], "b": [2]}
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 2), np.float32))
    nz = inspect_model(tmp_path / "d.npz")
    assert nz["format"] == "npz" and nz["tensors"] == [{"name": "x", "shape": [5, 2], "dtype": "float32"}]
    np.savez(tmp_path / "o.npz", x=np.array([object()], dtype=object))
    assert not inspect_model(tmp_path / "o.npz")["safe"]


# ----------------------------------------------------------------------------- ONNX external data


def _onnx_with_external(folder: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    t = model.graph.initializer[0]
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in {"location": location, "offset": "0", "length": "8"}.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    onnx.save(model, str(path))
    return path


def test_onnx_external_data_must_stay_inside(tmp_path):
    from compressor.models.onnx_input import prepare_onnx_input

    secret = tmp_path / "outside.bin"
    secret.write_bytes(np.array([1, 2], np.float32).tobytes())
    ok = _onnx_with_external(tmp_path / "ok", "w.bin")
    (tmp_path / "ok" / "w.bin").write_bytes(secret.read_bytes())
    info = inspect_model(ok)
    assert info["safe"] and info["ops"] == {"Add": 1} and info["opset"] == {"ai.onnx": 17}
    assert info["external_data"] == {"locations": ["w.bin"], "safe": True}
    prepare_onnx_input(ok, tmp_path / "copy.onnx")
    link_dir = tmp_path / "link"
    link_dir.mkdir()
    (link_dir / "w.bin").symlink_to(secret)
    bad = {
        "dotdot": _onnx_with_external(tmp_path / "dotdot", "../outside.bin"),
        "absolute": _onnx_with_external(tmp_path / "absolute", str(secret)),
        "symlink": _onnx_with_external(link_dir, "w.bin"),
        "nested-dotdot": _onnx_with_external(tmp_path / "nested", "sub/../../outside.bin"),
    }
    for name, path in bad.items():
        with pytest.raises(ModelLoadError, match="outside the model's folder"):
            prepare_onnx_input(path, tmp_path / f"{name}-copy.onnx")
        assert not (tmp_path / f"{name}-copy.onnx").exists()
        info = inspect_model(path)
        assert not info["safe"] and not info["external_data"]["safe"], name
        res = CliRunner().invoke(cli, ["inspect", str(path)])
        assert res.exit_code == 2 and "outside the model's folder" in res.output
