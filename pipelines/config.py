"""Typed configs: dataclasses loaded from YAML with `key.sub=value` overrides.

The YAML in the repository's top-level `configs/` (and `data_manifests/`) ships with the package:
a checkout or an editable install reads it beside `pipelines/`, a built wheel carries copies in
`pipelines/configs/` and `pipelines/data_manifests/` (setup.py). A path such as
`configs/model/tiny.yaml` therefore works from any directory; a file found nowhere is an error,
never an empty config or the dataclass defaults.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from genomics_bigbird.errors import InputError

T = TypeVar("T")

# Where the shipped YAML lives: a source checkout (or editable install), then a built wheel.
SHIPPED_ROOTS = (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent)


def shipped_dir(name: str) -> Path:
    """The directory `name` (configs, data_manifests) shipped with the package."""
    for root in SHIPPED_ROOTS:
        if (root / name).is_dir():
            return root / name
    raise InputError(f"the installed package has no {name}/ directory (looked in "
                     f"{', '.join(str(r) for r in SHIPPED_ROOTS)}); reinstall genomics-bigbird")


def find_config(path: str | Path) -> Path:
    """A config file: the path as given (from the working directory), else the shipped copy of a
    relative path such as `configs/model/tiny.yaml`. A file found nowhere is an InputError."""
    path = Path(path)
    if path.is_file():
        return path
    searched = [] if path.is_absolute() else [root / path for root in SHIPPED_ROOTS]
    for candidate in searched:
        if candidate.is_file():
            return candidate
    where = f" (nor under {' or '.join(str(r) for r in SHIPPED_ROOTS)})" if searched else ""
    raise InputError(f"config file not found{where}", path)


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML file that must hold a non-empty mapping; anything else is an InputError naming the file."""
    try:
        tree = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("config file not found", path) from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise InputError(f"not valid YAML: {err}", path, None if line is None else line + 1) from None
    if tree is None:
        raise InputError("the config file is empty", path)
    if not isinstance(tree, dict):
        raise InputError("config must be a YAML mapping", path)
    return tree


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Turn a YAML value into the dataclass field's type (nested dataclasses included)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise InputError(f"{where} must be a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (list, tuple, Sequence):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value or [])]
        return tuple(items) if origin is tuple else items
    if hint in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return hint(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise InputError(f"{where} must be {hint.__name__}, got {value!r}")
    if hint is Path or hint == "Path":
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys are an error naming the known ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; known keys: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _set_override(tree: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise InputError(f"override {dotted}={raw}: {key} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Load `cls` from a YAML file (found by `find_config`) and apply `key.sub=value` overrides.

    Without a file, `cls`'s defaults are the config (the commands whose defaults are the paper's).
    """
    tree: dict = {}
    if path is not None:
        path = find_config(path)
        tree = read_yaml_mapping(path)
    for item in overrides:
        if "=" not in item:
            raise InputError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_override(tree, key.strip(), raw)
    return from_dict(cls, tree, str(path) if path else "config")


def to_dict(config: Any) -> dict:
    """Return a config (a dataclass, or a mapping of some of its fields) as plain YAML/JSON-friendly data."""
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(dict(config) if isinstance(config, dict) else dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (next to a job's outputs)."""
    from genomics_bigbird.atomic import atomic_write

    with atomic_write(path) as handle:
        yaml.safe_dump(to_dict(config), handle, sort_keys=False)
