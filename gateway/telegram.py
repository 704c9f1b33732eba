"""The Bot API boundary: the aiogram `Bot`, method validation, and Telegram's answers mapped once.

Every Bot API call the gateway makes goes through `call()`, which turns whatever happened into
one of four outcomes the worker decides on: `Delivered`, `FloodWait`, `Migrated`, `Failure`
(`retryable` or not). aiogram's exception classes are looked at here and nowhere else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
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
from gateway.bodycheck import check_values
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
#: method name → the parameters it takes.
METHOD_FIELDS: Final = {name: frozenset(cls.model_fields) for name, cls in METHOD_CLASSES.items()}


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
    """Make one Bot API call and say what became of it.

    Parameters that are plain JSON (everything but uploads) go out as one JSON body through
    the aiogram session's own aiohttp session (its connections, timeout, proxy), and a
    successful answer's `result` is taken as it is: no aiogram model is built either way. Any
    other answer, and every upload, goes through aiogram, so Telegram's errors are mapped by
    one piece of code.
    """
    fields = METHOD_FIELDS[method]
    if not params.keys() <= fields:
        name = sorted(params.keys() - fields)[0]
        return Failure("invalid_params", f"{method} has no parameter '{name}'", retryable=False)
    if any(isinstance(value, dict | list) for value in params.values()):
        # What aiogram's models refused before they were skipped: the enqueue checks, for a
        # command that slipped into the queue (an older gateway). Raises InputError.
        check_values(params)
    try:
        body = json.dumps(params, ensure_ascii=False).encode()
    except TypeError:  # files to upload: multipart, through aiogram
        return await _call_aiogram(bot, method, params)
    try:
        status, answer = await _post(bot, method, body)
    except TimeoutError:
        return Failure("network_error", "Request timeout error", retryable=True, outage=True)
    except aiohttp.ClientError as exc:
        description = redact(f"{type(exc).__name__}: {exc}")
        return Failure("network_error", description, retryable=True, outage=True)
    if 200 <= status <= 226 and answer.startswith(_OK_PREFIXES):
        try:
            data = json.loads(answer)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("ok") is True and "result" in data:
            return Delivered(data["result"])
    return _answer_outcome(bot, method, params, status, answer)


#: How a successful answer starts (Telegram's and the sandbox's serialisations).
_OK_PREFIXES: Final = (b'{"ok":true', b'{"ok": true')


async def _post(bot: Bot, method: str, body: bytes) -> tuple[int, bytes]:
    """POST `body` to the Bot API within [telegram] request_timeout: (status, raw answer)."""
    session = bot.session
    http = await session.create_session()  # type: ignore[attr-defined]  # aiohttp's
    url = session.api.api_url(token=bot.token, method=method)
    timeout = aiohttp.ClientTimeout(total=float(session.timeout))
    async with http.post(url, data=body, headers=_JSON, timeout=timeout) as resp:
        return resp.status, await resp.read()


_JSON: Final = {"Content-Type": "application/json"}


def _answer_outcome(
    bot: Bot, method: str, params: dict[str, Any], status: int, answer: bytes
) -> Outcome:
    """Any answer but a plain success: what aiogram makes of it, mapped like its calls."""
    try:
        built = build_method(method, params)
    except InvalidParams as exc:
        return Failure("invalid_params", str(exc), retryable=False)
    text = answer.decode("utf-8", errors="replace")
    try:
        response = bot.session.check_response(bot, built, status, text)
    except (AiogramError, TelegramAPIError) as exc:
        return _failure_outcome(method, exc)
    return Delivered(to_json(response.result))


async def _call_aiogram(bot: Bot, method: str, params: dict[str, Any]) -> Outcome:
    """The call through aiogram's models (uploads: multipart form data)."""
    try:
        built = build_method(method, params)
    except InvalidParams as exc:
        return Failure("invalid_params", str(exc), retryable=False)
    try:
        result = await bot(built)  # within the session's timeout: [telegram] request_timeout
    except (AiogramError, TimeoutError) as exc:
        return _failure_outcome(method, exc)
    return Delivered(to_json(result))


def _failure_outcome(method: str, error: Exception) -> Outcome:
    """An aiogram exception (or a timeout) as an outcome."""
    match error:
        case TelegramRetryAfter():
            return FloodWait(float(error.retry_after), error.message)
        case TelegramMigrateToChat():
            return Migrated(error.migrate_to_chat_id, error.message)
        case TelegramNetworkError():
            return Failure("network_error", redact(error.message), retryable=True, outage=True)
        case TelegramServerError():
            return Failure("server_error", error.message, retryable=True, outage=True)
        case TelegramAPIError():
            return Failure(_api_error_code(error), error.message, retryable=False)
        case ClientDecodeError():
            # An answer that does not parse may be one Telegram sent after doing the work (a
            # model aiogram does not know yet): not an outage, so max_attempts bounds repeats.
            return Failure("bad_response", redact(error.message), retryable=True)
        case TimeoutError():
            return Failure("timeout", "Telegram did not answer in time", True, outage=True)
    # Anything else aiogram raises is not worth a crash.
    logger.warning("unexpected aiogram error for %s: %s", method, redact(str(error)))
    return Failure("client_error", redact(str(error)), retryable=True)


def _api_error_code(exc: TelegramAPIError) -> str:
    """A stable, lower-case code for a final Telegram error: bad_request, forbidden, ..."""
    name = type(exc).__name__.removeprefix("Telegram").removesuffix("Error")
    words = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name).lstrip("_")
    return words or "telegram_error"
