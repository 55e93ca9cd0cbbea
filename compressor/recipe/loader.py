"""YAML loading with line numbers, so every validation error points into the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from compressor.errors import RecipeError
from compressor.recipe.schema import Recipe

Path_ = tuple[Any, ...]
_PLAIN_KEY = re.compile(r"^[\w.-]+$")
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        # a tagged collection (!!python/object, !!set, ...) is never plain recipe data
        raise RecipeError(f"{loader.name}: line {node.start_mark.line + 1}: YAML tag {node.tag!r} is not allowed",
                          hint="recipes are plain YAML: remove the '!!' tag")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise RecipeError(f"{loader.name}: line {key_node.start_mark.line + 1}: mapping keys must be scalars")
            if key in out:
                raise RecipeError(f"{loader.name}: line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*path, key), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, source: str = "<recipe>") -> tuple[Any, dict[Path_, int]]:
    """Parse YAML safely (no Python tags) and return (data, {key path: line})."""
    lines: dict[Path_, int] = {}
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader already rejects control characters here
        loader.name = source
        node = loader.get_single_node()
        if node is None:
            return None, lines
        return _construct(node, (), lines, loader), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = " ".join(str(e.problem or e.context).split())
        raise RecipeError(f"{source}: invalid YAML at {where}: {problem}") from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, max(e.position, 0)) + 1
        raise RecipeError(f"{source}: invalid YAML at line {line}: character #x{e.character:04x} is not allowed",
                          hint="remove control characters from the file") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{source}: invalid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise RecipeError(f"{source}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # odd keys (newlines, control characters, spaces) are quoted so the message stays one line
            text = str(part) if _PLAIN_KEY.match(str(part)) else repr(part)
            out += ("." if out else "") + text
    return out or "<top level>"


def _line_for(loc: tuple[Any, ...], lines: dict[Path_, int]) -> int | None:
    # pydantic puts union tags into the location (e.g. ('steps', 0, 'quantize', 'quantize', 'mode')):
    # drop path parts that are not in the YAML until a known prefix remains
    candidate: list[Any] = []
    best = lines.get(())
    for part in loc:
        trial = (*candidate, part)
        if trial in lines:
            candidate.append(part)
            best = lines[tuple(candidate)]
    return best


def _yaml_loc(loc: tuple[Any, ...], lines: dict[Path_, int]) -> tuple[Any, ...]:
    kept: list[Any] = []
    for part in loc:
        if (*kept, part) in lines or not lines:
            kept.append(part)
        elif isinstance(part, str) and part in ("function-after", "function-before"):
            continue
        elif not any(k[: len(kept) + 1] == (*kept, part) for k in lines):
            # a tag or a missing key: keep missing keys (they are the point of the error)
            if part == loc[-1]:
                kept.append(part)
    return tuple(kept)


def validation_messages(err: ValidationError, lines: dict[Path_, int], source: str,
                        prefix: tuple[Any, ...] = ()) -> list[str]:
    """One ``file:line: key.path: message`` per error. ``prefix`` is where the validated
    mapping sits in the file (a target file's ``options`` validated on its own)."""
    msgs = []
    for e in err.errors():
        loc = _yaml_loc((*prefix, *e["loc"]), lines)
        line = _line_for(loc, lines)
        where = f"{source}:{line}" if line else source
        msg = " ".join(str(e["msg"]).split())
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see `compressor recipe schema`)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        msgs.append(f"{where}: {_format_loc(loc)}: {msg}")
    return msgs


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    data, lines = load_yaml(text, source)
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping with keys name, model, data, ...")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        msgs = validation_messages(e, lines, source)
        more = f" (and {len(msgs) - 1} more: {'; '.join(msgs[1:4])})" if len(msgs) > 1 else ""
        raise RecipeError(msgs[0] + more) from None


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe file; errors name the key path and YAML line.

    >>> recipe = load_recipe("recipes/quickstart.yaml")   # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read recipe {path}: {e}") from None
    return parse_recipe(text, str(path))
