"""Checking the ``**changes`` of Store.update_segment and Store.update_host.

Those keyword arguments are typed ``object`` (they come from API requests and
the CLI), so this module checks each one against the dataclass field it
replaces before anything reaches the database: a wrong name or type is a
TypeError, an enum value that is not a member is a ValueError, both naming the
field. Enum fields accept their string value and are converted to the member.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_changes(current: T, changes: Mapping[str, object], *, fixed: frozenset[str]) -> T:
    """``current`` with ``changes`` applied, each checked against its field's type.

    Fields named in ``fixed`` (identities) cannot be changed this way.
    """
    hints = _hints(type(current))  # type: ignore[arg-type]
    not_allowed = sorted(name for name in changes if name not in hints or name in fixed)
    if not_allowed:
        allowed = ", ".join(sorted(set(hints) - fixed))
        raise TypeError(
            f"cannot change {', '.join(not_allowed)} of {type(current).__name__}; can change {allowed}"
        )
    checked = {name: _check(name, hints[name], value) for name, value in changes.items()}
    return dataclasses.replace(current, **checked)  # type: ignore[type-var]


def _check(name: str, hint: Any, value: object) -> object:
    while hasattr(hint, "__supertype__"):  # NewType ids are their base type
        hint = hint.__supertype__
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        return _check(name, hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            members = ", ".join(repr(member.value) for member in hint)
            raise ValueError(f"{name} must be one of {members}, not {value!r}") from None
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, True)
    if not ok:
        raise TypeError(f"{name} must be {getattr(hint, '__name__', hint)}, not {type(value).__name__}")
    return float(value) if hint is float else value  # type: ignore[arg-type]
