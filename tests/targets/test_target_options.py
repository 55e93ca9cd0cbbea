"""Typed target options: every runtime declares an ``Options`` model; a target file's
``options:`` and ``quantization:`` are validated when it is loaded, and a bad key or
value is one error line naming the file, the YAML line and the key (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from compressor.cli.main import _register, cli
from compressor.errors import RecipeError
from compressor.targets.registry import RUNTIMES, make_target, options_model
from compressor.targets.spec import TargetOptions, load_target, load_target_file

ROOT = Path(__file__).resolve().parents[2]

# (runtime, options or quantization YAML, the key the error must name, its line in the file, words of the message)
BAD = [
    ("onnxruntime", "options:\n  graph_optimization_level: al\n", "options.graph_optimization_level", 4,
     "'disable', 'basic', 'extended' or 'all'"),
    ("onnxruntime", "options:\n  disabled_optimizers: SkipLayerNormFusion\n", "options.disabled_optimizers", 4,
     "valid list"),
    ("onnxruntime", "options:\n  graph_optimisation_level: all\n", "options.graph_optimisation_level", 4,
     "unknown key"),
    ("openvino", "options:\n  inference_precision: int4\n", "options.inference_precision", 4, "'f32', 'bf16' or 'f16'"),
    ("ort-format", "options:\n  target_platform: riscv\n", "options.target_platform", 4, "'arm' or 'amd64'"),
    ("ort-format", "options:\n  optimization_style: eager\n", "options.optimization_style", 4, "'fixed' or 'runtime'"),
    ("executorch", "options:\n  calibration_samples: 0\n", "options.calibration_samples", 4, "greater than or equal to 1"),
    ("executorch", "options:\n  per_chanel: false\n", "options.per_chanel", 4, "unknown key"),
    ("tensorrt", "options:\n  workspace_mib: lots\n", "options.workspace_mib", 4, "valid integer"),
    ("tensorrt", "options:\n  opt_batch: 8\n  max_batch: 4\n", "options", 3, "must not exceed max_batch"),
    ("onnxruntime", "quantization:\n  activation_type: int4\n", "quantization.activation_type", 4,
     "'uint8' or 'int8'"),
    ("onnxruntime", "quantization:\n  per_chanel: true\n", "quantization.per_chanel", 4, "unknown key"),
    ("tensorrt", "quantization: {activation_type: int8, weight_type: int16}\n", "quantization.weight_type", 3,
     "'int8' or 'uint8'"),
]


def _target_file(folder: Path, runtime: str, body: str, name: str = "bad-target") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nruntime: {runtime}\n" + body)
    return path


@pytest.mark.parametrize("runtime,body,key,line,words", BAD, ids=[f"{b[0]}:{b[2]}" for b in BAD])
def test_bad_option_is_one_located_error(tmp_path, runtime, body, key, line, words):
    path = _target_file(tmp_path, runtime, body)
    with pytest.raises(RecipeError) as e:
        load_target_file(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: {key}: "), msg
    assert words in msg and "\n" not in msg
    assert e.value.exit_code == 2


def test_unknown_runtime_names_its_line(tmp_path):
    path = _target_file(tmp_path, "onnx-runtime", "")
    with pytest.raises(RecipeError, match=rf"^{path}:2: runtime: unknown runtime 'onnx-runtime'; known runtimes: "):
        load_target_file(path)


def test_every_runtime_declares_its_options_and_the_files_use_them():
    for runtime in RUNTIMES:
        model = options_model(runtime)
        assert issubclass(model, TargetOptions) and model is not TargetOptions, runtime
        assert model.model_config["extra"] == "forbid"
    spec = load_target("onnxruntime-cpu")
    assert make_target(spec).options.disabled_optimizers == ["SkipLayerNormFusion"]


def test_options_are_looked_up_without_importing_a_runtime():
    code = textwrap.dedent("""
        import sys
        from compressor.targets.spec import available_targets, load_target_file
        for path in available_targets().values():
            load_target_file(path)
        heavy = [m for m in ("torch", "onnxruntime", "openvino", "tensorrt", "executorch") if m in sys.modules]
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})


def test_quantization_keeps_only_the_keys_the_file_sets():
    spec = load_target("tensorrt")
    assert spec.quantization == {"activation_type": "int8", "weight_type": "int8", "symmetric_activations": True,
                                 "symmetric_weights": True, "per_channel": True, "quantize_bias": False}


def test_a_target_built_in_code_is_checked_too():
    spec = load_target("openvino-cpu").model_copy(update={"options": {"inference_precision": "int4"}})
    with pytest.raises(RecipeError, match=r"^target openvino-cpu: options.inference_precision: Input should be"):
        make_target(spec)


def _recipe(folder: Path, target: str) -> Path:
    """A recipe whose model files exist (validate checks them) naming ``target``."""
    (folder / "m.onnx").write_bytes(b"not read by validate")
    path = folder / "r.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: r
        model: {{onnx: m.onnx, input_shape: [1, 4]}}
        data: {{source: digits}}
        targets: [{target}]
        """))
    return path


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_exit_2_naming_the_file(tmp_path, command):
    target = _target_file(tmp_path / "targets", "onnxruntime", "options:\n  graph_optimization_level: al\n")
    recipe = _recipe(tmp_path, "bad-target")
    _register()
    args = [command, str(recipe)] + (["--out", str(tmp_path / "run"), "-q"] if command == "run" else [])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert lines == [f"Error: {target}:4: options.graph_optimization_level: Input should be 'disable', 'basic', "
                     "'extended' or 'all'"], res.output
    assert not (tmp_path / "run").exists()


def test_targets_list_marks_the_file_invalid(tmp_path, monkeypatch):
    _target_file(tmp_path / "targets", "openvino", "options:\n  inference_precision: int4\n")
    monkeypatch.chdir(tmp_path)  # targets/ of the current folder is searched
    _register()
    res = CliRunner().invoke(cli, ["targets", "list"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    row = next(x for x in res.output.splitlines() if "bad-target" in x)
    assert "invalid:" in row and "options.inference_precision" in "".join(res.output.split())
