"""One config loader for every attnkit config dataclass.

It serves ``TrainConfig``, ``SearchConfig``, ``PipelineConfig`` and the configs of the method families.

:func:`dataclass_from_dict` builds a dataclass from a plain dict (parsed YAML/JSON, CLI key=value
pairs), converting strings to the annotated field types and naming the field in every error.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

__all__ = ["dataclass_from_dict", "coerce_field", "unwrap_optional"]

D = TypeVar("D")


def unwrap_optional(tp) -> tuple[Any, bool]:
    """(inner type, is_optional) for ``X | None``."""
    args = typing.get_args(tp)
    if (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def coerce_field(name: str, tp: Any, value: Any) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` of field ``name``.

    Supports ``bool``, ``int``, ``float``, ``str``, ``list[X]``, ``dict`` and ``X | None``; other types
    pass through unchecked.

    Raises:
        TypeError: the value does not fit the type; the message names the field.
    """
    inner, optional = unwrap_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise TypeError(f"config field {name!r} may not be None")
    try:
        return _convert(name, inner, value)
    except (TypeError, ValueError):
        raise TypeError(
            f"config field {name!r} expects {tp}, got {value!r} ({type(value).__name__})"
        ) from None


def _scalar(inner: Any, value: Any) -> Any:
    """Convert a bool/int/float/str value; TypeError/ValueError when it does not fit."""
    if inner is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(value, bool):
        raise TypeError
    if inner is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if inner is float:
        return float(value)
    if not isinstance(value, (str, int, float)):
        raise TypeError
    return str(value)


def _convert(name: str, inner: Any, value: Any) -> Any:
    """Convert ``value`` to the non-optional type ``inner``; TypeError/ValueError when it does not fit."""
    if inner in (bool, int, float, str):
        return _scalar(inner, value)
    origin = typing.get_origin(inner)
    if origin is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        (et,) = typing.get_args(inner)
        return [coerce_field(name, et, v) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    return value


def dataclass_from_dict(cls: type[D], d: dict[str, Any], base: D | None = None) -> D:
    """An instance of dataclass ``cls`` equal to ``base`` (default: the defaults) updated with ``d``.

    Args:
        cls: a dataclass type.
        d: field name -> value; strings are converted to the field's annotated type.
        base: an instance whose values are the starting point.

    Returns:
        A new ``cls`` instance (``__post_init__`` validation runs).

    Raises:
        ValueError: unknown keys (the message lists the valid keys), or whatever ``__post_init__`` raises.
        TypeError: a value of the wrong type (the message names the field).
    """
    if not isinstance(d, dict):
        raise TypeError(f"a {cls.__name__} is built from a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {', '.join(names)}")
    cur = {n: getattr(base, n) for n in names} if base is not None else {}
    for k, v in d.items():
        cur[k] = coerce_field(k, hints[k], v)
    return cls(**cur)
