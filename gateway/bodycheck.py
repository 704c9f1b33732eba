"""Every value of a request body checked the way Telegram would take it, before anything else.

A value that JSON allows but the Bot API (or aiogram on the way to it) cannot carry would be
accepted, queued, and then fail in the worker: a lone surrogate cannot be encoded as UTF-8, an
integer beyond 64 bits is no Telegram id, and an object nested hundreds of levels deep makes
the serialisers recurse. `check_values` refuses all of them at the door, naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from gateway import constants as c
from gateway.errors import InputError


def check_values(
    body: Any, *, max_values: int = c.MAX_BODY_VALUES, max_depth: int = c.MAX_BODY_DEPTH
) -> None:
    """Raise InputError (400) naming the first value of `body` that Telegram would refuse.

    The limits are the API's by default; the inlets pass their own (another tool's payloads
    are bigger and deeper than a Bot API call, and only their text reaches Telegram)."""
    _Walk(max_values, max_depth).value(body, "", 0)


class _Walk:
    """One depth-first walk; counts values so that a huge body stops early."""

    def __init__(self, max_values: int, max_depth: int) -> None:
        self.count = 0
        self.max_values = max_values
        self.max_depth = max_depth

    def value(self, value: Any, path: str, depth: int) -> None:
        self.count += 1
        if self.count > self.max_values:
            raise InputError(
                f"the body holds more than {self.max_values} values",
                code="too_many_values",
                field=path or None,
            )
        if isinstance(value, str):
            if not encodable(value):
                raise InputError(
                    f"{path} is not valid Unicode (it holds a lone surrogate)",
                    code="invalid_text",
                    field=path,
                )
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not c.INT64_MIN <= value <= c.INT64_MAX:
                raise InputError(
                    f"{path} is out of range (a signed 64-bit integer)",
                    code="out_of_range",
                    field=path,
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InputError(f"{path} is out of range", code="out_of_range", field=path)
        elif isinstance(value, dict | list):
            self.container(value, path, depth + 1)

    def container(self, value: dict[str, Any] | list[Any], path: str, depth: int) -> None:
        if depth > self.max_depth:
            raise InputError(
                f"{path} is nested too deeply (at most {self.max_depth} levels of objects "
                "and arrays in a body)",
                code="too_deep",
                field=path,
            )
        if isinstance(value, list):
            for index, item in enumerate(value):
                self.value(item, f"{path}[{index}]", depth)
            return
        for key, item in value.items():
            if not encodable(key):
                # The key itself cannot be shown: name the object that holds it.
                where = path or "the body"
                raise InputError(
                    f"{where} has a field name that is not valid Unicode",
                    code="invalid_text",
                    field=path or None,
                )
            self.value(item, f"{path}.{key}" if path else key, depth)


def encodable(value: str) -> bool:
    """False for strings with lone surrogates (valid JSON escapes, but not text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
