"""Resolve ``file.py:callable`` and ``package.module:callable`` specs.

A factory is the user's own Python code: recipes are trusted input (see README,
"Security"). ``compressor validate`` only checks that the file exists and parses; it
never imports it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from compressor.errors import ModelLoadError, RecipeError
from compressor.recipe.paths import split_factory


def resolve_file(module: str) -> Path | None:
    """The factory's file when the spec names a .py file, else None (a module). The file is
    taken as it stands: a run anchors it to the recipe's folder first (:mod:`compressor.recipe.paths`)."""
    return Path(module).expanduser() if module.endswith(".py") else None


def check_factory(spec: str) -> None:
    """Static check: the file exists, parses and defines the callable. Never imports it."""
    module, attr = split_factory(spec)
    path = resolve_file(module)
    if path is None:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise RecipeError(f"factory module {module!r} is not importable", hint="install it or give a file path")
        return
    if not path.exists():
        raise RecipeError(f"factory file {path} does not exist")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise RecipeError(f"factory file {path} has a syntax error at line {e.lineno}: {e.msg}") from None
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    names |= {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    if attr not in names:
        raise RecipeError(f"factory file {path} defines no {attr!r}", hint=f"define {attr}() in {path.name}")


def import_callable(spec: str) -> Callable[..., Any]:
    """Import and return the callable named by ``spec`` (runs the user's code)."""
    module, attr = split_factory(spec)
    path = resolve_file(module)
    try:
        if path is not None:
            if not path.exists():
                raise ModelLoadError(f"factory file {path} does not exist")
            name = "compressor_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            mod = sys.modules.get(name)
            if mod is None:
                spec_ = importlib.util.spec_from_file_location(name, path)
                assert spec_ is not None and spec_.loader is not None
                mod = importlib.util.module_from_spec(spec_)
                # let the factory import siblings next to it (examples/ helpers)
                sys.path.insert(0, str(path.parent.resolve()))
                try:
                    sys.modules[name] = mod
                    spec_.loader.exec_module(mod)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
                finally:
                    sys.path.remove(str(path.parent.resolve()))
        else:
            mod = importlib.import_module(module)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"importing factory {spec!r} failed: {type(e).__name__}: {e}") from e
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise ModelLoadError(f"factory {spec!r}: {module} has no callable {attr!r}")
    return fn
