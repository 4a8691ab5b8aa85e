"""Valid values of config fields: a numeric field declares its range with ``bounded``; a
``Literal`` field its choices. ``problems`` lists what is wrong with a set of values, for
both config files (``config._build``, errors naming the dotted key) and dataclasses built
from Python (``validate`` in ``__post_init__``, a ValueError naming the field)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Any, Literal


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> Any:
    """A dataclass field whose value (or each element of a tuple value) must lie in range."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le})


def _range_text(meta: dict) -> str:
    parts = [f">= {meta['ge']}" if meta.get("ge") is not None else "", f"> {meta['gt']}" if meta.get("gt") is not None
             else "", f"<= {meta['le']}" if meta.get("le") is not None else ""]
    return " and ".join(p for p in parts if p)


def _in_range(value: Any, meta: dict) -> bool:
    if isinstance(value, tuple):
        return all(_in_range(v, meta) for v in value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True
    return not ((meta.get("ge") is not None and value < meta["ge"]) or (meta.get("gt") is not None and value <= meta["gt"])
                or (meta.get("le") is not None and value > meta["le"]))


def problems(cls: type, values: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, message)`` for each value outside its range or choices."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value, tp = values[f.name], hints[f.name]
        if typing.get_origin(tp) is Literal and value not in typing.get_args(tp):
            out.append((f.name, f"{value!r} is not one of {' | '.join(map(str, typing.get_args(tp)))}"))
        elif f.metadata and not _in_range(value, f.metadata):
            out.append((f.name, f"{value!r} is out of range (must be {_range_text(f.metadata)})"))
    return out


def validate(obj: Any) -> None:
    """Raise ValueError naming the first field of ``obj`` outside its range or choices."""
    found = problems(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if found:
        name, message = found[0]
        raise ValueError(f"{type(obj).__name__}.{name}: {message}")
