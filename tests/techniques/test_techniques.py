"""The technique registry (compressor/techniques/): every registered technique is one module with
complete, documented settings, and adding one is adding a module: a technique defined here
appears in the recipe schema, the accuracy-aware tuner's trials, the engine and the report."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from pydantic import ValidationError

import compressor.techniques as registry
from compressor.data import load_split
from compressor.errors import StepError
from compressor.recipe.schema import QuantizeConfig, recipe_json_schema
from compressor.recipe.steps.quantize import AccuracyCriterion, QUANTIZER_TRIALS, quantize_config_model, tuner_trials
from compressor.steps.quantize.accuracy_aware import calibration_variants
from compressor.steps.quantize.onnxruntime_ptq import quantize_onnx
from compressor.steps.quantize.step import techniques as report_words
from tests.depthwise_fixtures import dw_onnx  # noqa: F401 - the trained depthwise net

ROOT = Path(__file__).resolve().parents[2]

# a whole technique, as its module would be (compressor/techniques/model_stamp.py): it writes a
# metadata entry into the quantized model, after ORT and the other techniques
STAMP = textwrap.dedent('''
    """Stamp the quantized model's metadata (a technique of the tests)."""

    from __future__ import annotations

    from typing import Any

    from pydantic import Field

    from compressor.techniques.base import Models, Technique, TunerTrial, register


    @register
    class ModelStamp(Technique):
        name = "model_stamp"
        fields = {"model_stamp": (str, Field("", description="write this text into the quantized model's "
                                                 "metadata (model_stamp; engine onnxruntime)"))}
        phase = "correction"
        order = 40
        calibration = "none"
        fp32_model = runtime = False
        modes = ("static", "dynamic")
        trials = (TunerTrial(85, {"model_stamp": "tuned"}, "a stamped model"),)

        def apply(self, cfg: Any, models: Models) -> dict[str, Any]:
            import onnx

            model = onnx.load(str(models.out))
            onnx.helper.set_model_props(model, {"model_stamp": cfg.model_stamp})
            onnx.save(model, str(models.out))
            return {"model_stamp": cfg.model_stamp}

        def describe(self, details: dict[str, Any]) -> str | None:
            return f"stamped {details['model_stamp']!r}" if details.get("model_stamp") else None
''')


def _load(path: Path):
    """Import ``path`` as compressor.techniques.<stem>, as the package imports its own modules."""
    spec = importlib.util.spec_from_file_location(f"compressor.techniques.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stamp(tmp_path):
    path = tmp_path / "model_stamp.py"
    path.write_text(STAMP)
    _load(path)
    yield quantize_config_model()  # QuantizeConfig as it is made with the technique registered
    registry.unregister("model_stamp")
    sys.modules.pop("compressor.techniques.model_stamp", None)
    assert "model_stamp" not in [t.name for t in registry.techniques()]
    assert "model_stamp" not in quantize_config_model().model_fields


def test_every_module_is_one_registered_technique_with_documented_settings():
    # helpers shared by the modules (``_graph``) are not techniques; the registry skips them too
    modules = {m.name for m in pkgutil.iter_modules(registry.__path__) if not m.name.startswith("_")} - {"base"}
    registered = {t.name: t for t in registry.techniques()}
    assert set(registered) == modules, "each technique module registers exactly one technique of its name"
    props = recipe_json_schema()["$defs"]["QuantizeConfig"]["properties"]
    default = QuantizeConfig()
    engines = set(QuantizeConfig.model_fields["engine"].annotation.__args__)
    for name, t in registered.items():
        assert type(t).__module__ == f"compressor.techniques.{name}"
        assert t.phase in registry.PHASES and t.calibration in ("required", "optional", "none")
        assert set(t.engines) <= engines and set(t.modes) <= {"static", "dynamic"} and t.engines
        assert not t.active(default), f"{name} is off by default"
        assert t.describe({}) is None and (type(t).__doc__ or "").strip()
        for key, (_, field) in t.fields.items():
            assert props[key]["description"] == field.description and len(field.description) > 40
        for trial in t.trials:
            assert t.active(QuantizeConfig(**trial.settings)), f"{name}'s trial {trial.settings} turns it on"
    ranks = [tr.rank for tr in tuner_trials()]
    assert len(ranks) == len(set(ranks)), "two trials share a rank: the tuner's order would be ambiguous"


def test_the_tuner_tries_what_it_tried_before_techniques_were_modules():
    assert calibration_variants() == [
        {"calibration": "percentile", "percentile": 99.99},
        {"per_channel": False},
        {"reduce_range": True},
        {"bias_correction": "fast"},
        {"equalization": True},
        {"equalization": True, "bias_correction": "fast"},
        {"activation_smoothing": 0.6},
        {"weight_rounding": "gptq"},
        {"equalization": True, "bias_correction": "fast", "weight_rounding": "gptq"},
        {"equalization": True, "activation_smoothing": 0.6, "bias_correction": "fast", "weight_rounding": "gptq"},
        {"activation_type": "uint8", "weight_type": "uint8"},
    ]
    described = AccuracyCriterion.model_fields["tune_calibration"].description
    assert all(t.words in described for t in tuner_trials())
    assert [t.name for t in registry.in_phase_order()] == ["equalization", "activation_smoothing", "weight_rounding",
                                                           "bias_correction"]


@pytest.mark.parametrize("settings, message", [
    ({"engine": "nncf", "weight_rounding": "gptq"},
     "equalization, activation_smoothing, bias_correction and weight_rounding apply to engine onnxruntime, not nncf"),
    ({"engine": "nncf", "bias_correction": "fast"}, "not nncf (use nncf.bias_correction)"),
    ({"mode": "dynamic", "bias_correction": "full"},
     "bias_correction and weight_rounding need mode: static (calibration data)"),
])
def test_the_registry_refuses_what_an_engine_or_mode_does_not_run(settings, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QuantizeConfig(**settings)
    assert QuantizeConfig(mode="dynamic", equalization=True).equalization  # equalization runs dynamic too


def test_a_technique_that_needs_calibration_data_is_refused_without_it(dw_onnx, tmp_path):
    with pytest.raises(StepError, match="bias_correction and weight_rounding need static quantization") as e:
        quantize_onnx(dw_onnx, tmp_path / "q.onnx", QuantizeConfig(bias_correction="fast"), None)
    assert e.value.hint.endswith("bias_correction: none and weight_rounding: nearest")
    assert not (tmp_path / "q.onnx").exists()


def test_a_technique_module_is_all_it_takes(stamp, dw_onnx, tmp_path):
    Config = stamp
    # the recipe's settings: the key, documented, refused where its engine is not
    assert Config.model_json_schema()["properties"]["model_stamp"]["description"].startswith("write this text")
    assert list(Config.model_fields).index("model_stamp") == list(Config.model_fields).index("weight_rounding") + 1
    with pytest.raises(ValidationError, match="weight_rounding and model_stamp apply to engine onnxruntime, not inc"):
        Config(engine="inc", model_stamp="x")
    # the tuner's trials, at the technique's rank (before U8U8)
    assert calibration_variants()[-2:] == [{"model_stamp": "tuned"}, {"activation_type": "uint8", "weight_type": "uint8"}]
    # the engine applies it, last (phase correction) and after GPTQ rounding; the report names it
    calib = load_split("digits", "train", 64, seed=0)
    out = tmp_path / "q.onnx"
    details = quantize_onnx(dw_onnx, out, Config(model_stamp="hello", weight_rounding="gptq"), calib)
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["model_stamp"] == "hello"
    assert details["model_stamp"] == "hello" and details["weight_rounding"] == "gptq"
    words = report_words(details)
    assert words.index("stamped 'hello'") > next(i for i, w in enumerate(words) if w.startswith("GPTQ"))
    # without it, the engine leaves the model alone
    quantize_onnx(dw_onnx, out, Config(), calib)
    assert "model_stamp" not in {p.key for p in onnx.load(str(out)).metadata_props}


def test_a_technique_module_reaches_the_recipe_schema(tmp_path):
    """In a fresh interpreter, a technique module imported before the recipe (as the package imports
    its own) is in `compressor recipe schema` and in a recipe's validation."""
    (tmp_path / "model_stamp.py").write_text(STAMP)
    code = textwrap.dedent(f'''
        import importlib.util, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import compressor.techniques
        spec = importlib.util.spec_from_file_location("compressor.techniques.model_stamp",
                                                      {str(tmp_path / "model_stamp.py")!r})
        sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        from compressor.recipe.schema import QuantizeConfig, recipe_json_schema
        s = recipe_json_schema()["$defs"]
        try:
            QuantizeConfig(engine="nncf", model_stamp="x")
            refused = ""
        except ValueError as e:
            refused = str(e)
        print(json.dumps({{"key": s["QuantizeConfig"]["properties"]["model_stamp"],
                          "tuner": s["AccuracyCriterion"]["properties"]["tune_calibration"]["description"],
                          "refused": refused}}))
    ''')
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["key"]["default"] == "" and got["key"]["description"].startswith("write this text")
    assert "a stamped model, U8U8" in got["tuner"]
    assert "weight_rounding and model_stamp apply to engine onnxruntime, not nncf" in got["refused"]


def test_the_quantizer_trials_are_not_techniques():
    keys = {k for t in registry.techniques() for k in t.fields}
    assert all(not (set(tr.settings) & keys) for tr in QUANTIZER_TRIALS)
