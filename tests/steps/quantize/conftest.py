from pathlib import Path

import pytest

from tests.accuracy_fixtures import write_hostile_model


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory) -> Path:
    return write_hostile_model(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Sensitivity analyses are cached; each test starts from an empty cache."""
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "cache"))
