"""Booleans where Telegram expects a number: refused before aiogram's models see them.

pydantic's lax mode turns `true`/`false` into 1/0 for an integer field, so a body such as
`{"message_thread_id": false}` would be accepted and forwarded as it is; Telegram's parameter is
a number, and the mistake belongs to the client. This walks the parameters (nested models and
lists of them too) and names the first boolean whose field does not take one.
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Any

from pydantic import BaseModel

#: How deep nested parameters are followed (bodycheck already bounds nesting at 10).
MAX_DEPTH = 10


def first_misplaced_bool(model: type[BaseModel], params: dict[str, Any]) -> str | None:
    """The dotted path of the first boolean given to a field that takes no boolean, or None."""
    return _walk(model, params, "", 0)


def _walk(model: type[BaseModel], params: dict[str, Any], prefix: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return None
    fields = model.model_fields
    for name, value in params.items():
        field = fields.get(name)
        if field is None:
            continue
        where = f"{prefix}{name}"
        found = _check(field.annotation, value, where, depth)
        if found:
            return found
    return None


def _check(annotation: Any, value: Any, where: str, depth: int) -> str | None:
    if isinstance(value, bool):
        return None if _takes_bool(annotation) else where
    if isinstance(value, dict):
        for model in _models(annotation):
            found = _walk(model, value, f"{where}.", depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        inner = _list_items(annotation)
        for index, item in enumerate(value):
            found = _check(inner, item, f"{where}.{index}", depth + 1)
            if found:
                return found
    return None


@cache
def _takes_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return any(isinstance(arg, bool) for arg in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(_takes_bool(arg) for arg in typing.get_args(annotation))
    # Numbers, strings and None take no boolean; anything else (a model, aiogram's Default
    # sentinels) is left to pydantic.
    return annotation not in (int, float, str, type(None))


@cache
def _models(annotation: Any) -> tuple[type[BaseModel], ...]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return (annotation,)
    return tuple(model for arg in typing.get_args(annotation) for model in _models(arg))


@cache
def _list_items(annotation: Any) -> Any:
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is list:
            return typing.get_args(arg)[0]
    return Any
