"""Typed dataclasses from YAML/JSON mappings and CLI strings — the one loader behind
StreamGuard's config profiles (``streamguard.config``) and the compile profiles
(``pipelines.platform``).

``build(cls, data, where, base=...)`` returns a new ``cls`` instance: fields in
``data`` are checked against the type hints (bool, int, float, str, ``Literal[...]``,
Optional/Union, list, tuple, dict of str, nested dataclasses), fields not in ``data``
keep ``base``'s value or the default. Errors name the field path and the value, as
``where.field: expected an integer, got 'abc'`` or ``where.field: unknown value 'fp8'
(allowed: auto, off, bf16, fp16)``, with the caller's exception class.
``raw=True`` marks values as CLI strings, parsed as YAML once the target type is known.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping

import yaml

from streamguard.errors import UserError

_NONE_WORDS = ("null", "none", "None", "~", "")


def build(cls: type, data: Any, where: str, *, base: Any = None, raw: bool = False,
          error: type[Exception] = UserError) -> Any:
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise error(f"{_join(where, unknown[0])}: unknown field (known: {', '.join(sorted(names))})")
    values = {n: getattr(base, n) for n in names} if base is not None else {}
    for key, value in data.items():
        values[key] = convert(hints[key], value, _join(where, key), current=values.get(key), raw=raw, error=error)
    return cls(**values)


def convert(tp: Any, value: Any, where: str, *, current: Any = None, raw: bool = False,
            error: type[Exception] = UserError) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        # "null" means None on the CLI, and in a mapping too where the field cannot be a string: a KFP
        # parameter (the pipeline's ``overrides``) cannot carry a JSON null through the SDK
        words = isinstance(value, str) and value in _NONE_WORDS and (raw or value != "")
        if type(None) in args and (value is None or (words and (raw or str not in inner))):
            return None
        for a in inner:
            try:
                return convert(a, value, where, current=current, raw=raw, error=error)
            except error:
                if len(inner) == 1:
                    raise
        raise error(f"{where}: expected {tp}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, base=current, raw=raw, error=error)
    if origin is typing.Literal:
        return _literal(args, value, where, raw=raw, error=error)
    if raw and tp is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise error(f"{where}: cannot parse {value!r}") from None
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise error(f"{where}: expected a list, got {value!r}")
        items = [convert(args[0], v, f"{where}[{i}]", error=error) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in value.items()):
            raise error(f"{where}: expected a mapping of strings to strings, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise error(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise error(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            return float(value)  # YAML 1.1 (PyYAML) reads `1e-4` (no dot) as a string; YAML 1.2 and users: a number
        raise error(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `cpu: 8` in YAML means "8"
        raise error(f"{where}: expected a string, got {value!r}")
    raise error(f"{where}: unsupported type {tp}")


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _literal(allowed: tuple, value: Any, where: str, *, raw: bool, error: type[Exception]) -> Any:
    """One of ``allowed``; a CLI string is parsed as YAML only for non-string choices (``off`` stays ``off``)."""
    if raw and not all(isinstance(a, str) for a in allowed):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise error(f"{where}: cannot parse {value!r}") from None
    for a in allowed:
        if type(value) is type(a) and value == a:
            return a
    hint = ""
    if isinstance(value, bool) and any(isinstance(a, str) for a in allowed):
        hint = " (YAML reads unquoted on/off/yes/no as true/false: quote the value)"
    raise error(f"{where}: unknown value {value!r} (allowed: {', '.join(map(str, allowed))}){hint}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
