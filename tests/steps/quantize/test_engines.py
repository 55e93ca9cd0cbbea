"""The engine interface and its one registry, and the layering inside steps/quantize:
step -> engines -> tuning (accuracy_aware, tuning) -> ORT PTQ, with no back-edges."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import compressor.steps.quantize as pkg
from compressor.errors import StepError
from compressor.recipe.schema import QuantizeConfig
from compressor.steps.quantize.engines import ENGINES, QuantizeEngine, get_engine

# lower number = lower layer; a module may import only modules of a lower layer (or its own package's __init__)
LAYERS = {
    "ranges": -1, "alone": -1, "formats": -1, "noise": -1,
    "onnxruntime_ptq": 0, "tuning": 0, "macs": 0, "accuracy_aware": 1, "measure": 1,
    "engines": 2, "engines._common": 2.5, "engines.onnxruntime": 3, "engines.nncf": 3, "engines.inc": 3,
    "step": 4,
}


def _module(path: Path) -> str:
    rel = path.relative_to(Path(pkg.__file__).parent).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def test_every_module_has_a_layer_and_imports_only_below_it():
    prefix = "compressor.steps.quantize."
    files = [p for p in Path(pkg.__file__).parent.rglob("*.py") if p.name != "__init__.py" or p.parent.name == "engines"]
    seen = set()
    for path in files:
        me = _module(path)
        seen.add(me)
        assert me in LAYERS, f"{me}: give the new module a layer in this test"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
                other = node.module[len(prefix):]
                assert LAYERS[other] < LAYERS[me], f"{me} imports {other}: a back-edge"
    assert seen == set(LAYERS)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_implements_the_interface(name):
    engine = get_engine(name)
    assert isinstance(engine, QuantizeEngine) and engine.name == name and "static" in engine.modes


def test_the_schema_offers_exactly_the_registered_engines():
    import typing

    assert set(typing.get_args(QuantizeConfig.model_fields["engine"].annotation)) == set(ENGINES)


@pytest.mark.parametrize("name", ["nncf", "inc"])
def test_static_only_engines_refuse_dynamic(name):
    with pytest.raises(StepError, match="static only"):
        get_engine(name).check(QuantizeConfig(engine=name, mode="dynamic"))
