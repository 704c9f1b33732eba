"""The Bot API boundary: the aiogram `Bot`, method validation, and Telegram's answers mapped once.

Every Bot API call the gateway makes goes through `call()`, which turns whatever happened into
one of four outcomes the worker decides on: `Delivered`, `FloodWait`, `Migrated`, `Failure`
(`retryable` or not). aiogram's exception classes are looked at here and nowhere else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from aiogram import Bot, methods
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods.base import Response, TelegramMethod
from pydantic import BaseModel, ValidationError

from gateway import constants as c
from gateway.redact import redact
from gateway.strictparams import first_misplaced_bool

logger = logging.getLogger(__name__)

#: method name → aiogram method class, for the methods /enqueue_command may carry.
METHOD_CLASSES: dict[str, type[TelegramMethod[Any]]] = {
    name: getattr(methods, name[0].upper() + name[1:])
    for name in (*c.ALLOWED_METHODS, *c.INTERNAL_METHODS)
}
#: aiogram parses every answer with `Response[<the method's return type>]`. pydantic caches
#: those generic classes only weakly, so without a reference each one is rebuilt (about a
#: millisecond of CPU) every time the garbage collector has dropped it. These keep them alive.
_RESPONSE_TYPES: Final = tuple(
    Response[cls.__returning__]  # type: ignore[name-defined]  # a runtime subscript, not a type
    for cls in METHOD_CLASSES.values()
)


def create_bot(
    token: str, api_base: str, request_timeout: float = c.BOT_API_TIMEOUT_SECONDS
) -> Bot:
    """An aiogram Bot whose session talks to `api_base` (Telegram, or the sandbox), giving up
    on a call after `request_timeout` seconds."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base), timeout=request_timeout)
    return Bot(token, session=session)


class InvalidParams(ValueError):
    """The parameters do not fit the method; `field` names the first offending one."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def build_method(method: str, params: dict[str, Any]) -> TelegramMethod[Any]:
    """Validate `params` against aiogram's model of `method` and build the call."""
    cls = METHOD_CLASSES[method]
    unknown = sorted(set(params) - set(cls.model_fields))
    if unknown:
        raise InvalidParams(f"{method} has no parameter '{unknown[0]}'", unknown[0])
    if misplaced := first_misplaced_bool(cls, params):
        raise InvalidParams(f"{misplaced}: must be a number, not true or false", misplaced)
    try:
        return cls.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        detail = first["msg"]
        if first["type"] == "missing":
            detail = "is required"
        raise InvalidParams(f"{where}: {detail}" if where else detail, where) from None


@dataclass(frozen=True)
class Delivered:
    """Telegram accepted the call; `result` is its answer as JSON."""

    result: Any


@dataclass(frozen=True)
class FloodWait:
    """429: Telegram wants `retry_after` seconds of quiet."""

    retry_after: float
    description: str


@dataclass(frozen=True)
class Migrated:
    """The group became a supergroup; the call must go to `chat_id`."""

    chat_id: int
    description: str


@dataclass(frozen=True)
class Failure:
    """Anything else; `retryable` for network trouble, server errors and unexpected errors.

    `outage` marks a failure that says Telegram could not do the work (it could not be reached,
    did not answer in time, or answered with a server error): it is retried until the command
    is too old, however many attempts that takes, rather than counted against them.
    """

    code: str
    description: str
    retryable: bool
    outage: bool = False

    def as_error(self) -> dict[str, Any]:
        return {"code": self.code, "description": self.description}


Outcome = Delivered | FloodWait | Migrated | Failure


def to_json(value: Any) -> Any:
    """Telegram's answer (aiogram models) as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True, by_alias=True)
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


async def call(bot: Bot, method: str, params: dict[str, Any]) -> Outcome:
    """Make one Bot API call and say what became of it."""
    try:
        built = build_method(method, params)
    except InvalidParams as exc:
        return Failure("invalid_params", str(exc), retryable=False)
    try:
        result = await bot(built)  # within the session's timeout: [telegram] request_timeout
    except TelegramRetryAfter as exc:
        return FloodWait(float(exc.retry_after), exc.message)
    except TelegramMigrateToChat as exc:
        return Migrated(exc.migrate_to_chat_id, exc.message)
    except TelegramNetworkError as exc:
        return Failure("network_error", redact(exc.message), retryable=True, outage=True)
    except TelegramServerError as exc:
        return Failure("server_error", exc.message, retryable=True, outage=True)
    except TelegramAPIError as exc:
        return Failure(_api_error_code(exc), exc.message, retryable=False)
    except ClientDecodeError as exc:
        # An answer that does not parse may be one Telegram sent after doing the work (a model
        # aiogram does not know yet): not an outage, so max_attempts bounds the repeats.
        return Failure("bad_response", redact(exc.message), retryable=True)
    except TimeoutError:
        return Failure("timeout", "Telegram did not answer in time", True, outage=True)
    except AiogramError as exc:  # anything else aiogram raises is not worth a crash
        logger.warning("unexpected aiogram error for %s: %s", method, redact(str(exc)))
        return Failure("client_error", redact(str(exc)), retryable=True)
    return Delivered(to_json(result))


def _api_error_code(exc: TelegramAPIError) -> str:
    """A stable, lower-case code for a final Telegram error: bad_request, forbidden, ..."""
    name = type(exc).__name__.removeprefix("Telegram").removesuffix("Error")
    words = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name).lstrip("_")
    return words or "telegram_error"
