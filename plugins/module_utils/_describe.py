# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Describing untrusted input in error messages: bounded, and in the operator's words.

Errors quote what the operator wrote so that it can be found and fixed, but input can be hostile
or just large: a 1 MB query, a list nested 5,000 deep, an integer with 5,000 digits. Quoting
must then stay short and must not fail itself (``str()`` of a deep list raises RecursionError,
``str()`` of a huge integer raises ValueError). Values coming through Ansible carry internal
types (``_AnsibleTaggedInt``, ``_AnsibleLazyTemplateList``), so messages say what a value is
("an integer", "a list"), never its Python type name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

BRIEF_LENGTH = 120
_BRIEF_DEPTH = 3
_BRIEF_ITEMS = 8


def type_phrase(value: Any) -> str:
    """What ``value`` is, in words: "a list", "an integer", "text", "a mapping" ..."""
    if value is None:
        return "null"
    # bool before int: True is an int to Python, not to an operator.
    for kinds, phrase in (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a number"),
        (str, "text"),
        ((bytes, bytearray), "bytes"),
        (Mapping, "a mapping"),
        ((list, tuple), "a list"),
        ((set, frozenset), "a set"),
    ):
        if isinstance(value, kinds):
            return phrase
    return "an unsupported value"


class _Elided:
    """Stands for what ``brief`` leaves out; prints as ``...``."""

    def __repr__(self) -> str:
        return "..."


_ELIDED = _Elided()


def _plain(value: Any, depth: int) -> Any:  # noqa: PLR0911 - one answer per kind of value
    """A bounded copy of ``value`` in plain Python types, safe to ``repr``."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        # Python refuses to print integers of more than 4300 digits; such input is not a port or an index anyway.
        return int(value) if value.bit_length() <= 256 else _Huge()
    if isinstance(value, str):
        return str(value[:BRIEF_LENGTH])
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:BRIEF_LENGTH])
    if depth >= _BRIEF_DEPTH:
        return _ELIDED
    if isinstance(value, Mapping):
        result: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == _BRIEF_ITEMS:
                result[_ELIDED] = _ELIDED
                break
            plain_key = _plain(key, depth + 1)
            result[plain_key if _hashable(plain_key) else repr(plain_key)] = _plain(item, depth + 1)
        return result
    if isinstance(value, (list, tuple, set, frozenset)):
        items: list[Any] = []
        for index, item in enumerate(value):
            if index == _BRIEF_ITEMS:
                items.append(_ELIDED)
                break
            items.append(_plain(item, depth + 1))
        return items
    return _Unsupported()


class _Huge:
    def __repr__(self) -> str:
        return "a very large integer"


class _Unsupported:
    def __repr__(self) -> str:
        return "an unsupported value"


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def brief(value: Any) -> str:
    """``value`` as text for a message: ``str()`` for scalars, a bounded repr for structures, never long."""
    plain = _plain(value, 0)
    text = plain if isinstance(plain, str) else repr(plain)
    return text if len(text) <= BRIEF_LENGTH else text[: BRIEF_LENGTH - 3] + "..."


def window(text: str, position: Optional[int], width: int = BRIEF_LENGTH) -> str:
    """``repr(text)``, or when longer than ``width`` the repr of ``width`` characters around ``position``.

    ``...`` marks the cut ends, so an operator sees where the error is without a megabyte of query.
    """
    if len(text) <= width:
        return repr(text)
    center = 0 if position is None else max(0, min(position, len(text)))
    start = max(0, min(center - width // 2, len(text) - width))
    end = min(len(text), start + width)
    return f"{'...' if start > 0 else ''}{text[start:end]!r}{'...' if end < len(text) else ''}"
