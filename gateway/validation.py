"""`/enqueue_command` bodies: checked field by field, turned into commands.

Two forms are accepted:
- short: `{"text": "...", "chat_id"?: 123, "parse_mode"?: "HTML", ...}`; without `chat_id`
  the message goes to every allowed user;
- general: `{"method": "sendMessage", "params": {...}}` for the allow-listed Bot API methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway import constants as c
from gateway.bodycheck import check_values, encodable
from gateway.commands import Command
from gateway.configvalues import LongText
from gateway.errors import InputError
from gateway.questions import ask, valid_buttons
from gateway.split import MarkupError, truncate_text, visible_length
from gateway.telegram import InvalidParams, build_method

#: Fields of the short form beside `text`, with the types they must have.
SHORT_FIELDS: dict[str, tuple[type, ...]] = {
    "chat_id": (int, str),
    "parse_mode": (str,),
    "disable_notification": (bool,),
    "protect_content": (bool,),
    "message_thread_id": (int,),
    "link_preview_options": (dict,),
    "reply_markup": (dict,),
}
DEFAULT_QUESTION_TIMEOUT = 600
MAX_QUESTION_TIMEOUT = 7 * 24 * 3600
#: Methods that act on an existing message of a chat.
MESSAGE_ID_METHODS = frozenset({"editMessageText", "editMessageReplyMarkup", "deleteMessage"})
#: Fields both forms may carry that are about the gateway, not Telegram.
ENVELOPE_FIELDS = frozenset({"idempotency_key", "reply_to"})


@dataclass(frozen=True)
class EnqueueRequest:
    """A checked request: the commands to queue, and its idempotency key if any."""

    commands: list[Command]
    idempotency_key: str | None


async def check_enqueue(
    body: dict[str, Any],
    allowed_users: Iterable[int],
    idempotency_header: str | None,
    long_text: LongText,
    max_text_length: int,
) -> EnqueueRequest:
    """`parse_enqueue`, in a worker thread when the body carries a long text: parsing the
    markup of a big text takes seconds of CPU, and the event loop must keep serving."""
    args = (body, allowed_users, idempotency_header, long_text, max_text_length)
    if _text_length(body) > c.OFFLOAD_TEXT_LENGTH:
        return await asyncio.to_thread(parse_enqueue, *args)
    return parse_enqueue(*args)


def _text_length(body: dict[str, Any]) -> int:
    params = body.get("params") if "method" in body else body
    text = params.get("text") if isinstance(params, dict) else None
    return len(text) if isinstance(text, str) else 0


def parse_enqueue(
    body: dict[str, Any],
    allowed_users: Iterable[int],
    idempotency_header: str | None = None,
    long_text: LongText = "split",
    max_text_length: int = c.DEFAULT_MAX_TEXT_LENGTH,
) -> EnqueueRequest:
    """Check an `/enqueue_command` body; raise InputError naming the first bad field.

    Every value is checked first (valid Unicode, 64-bit integers, bounded nesting), and markup
    is parsed as Telegram would. Text over Telegram's limit is checked per `long_text`:
    "reject" refuses it, "truncate" shortens it now, "split" leaves it whole for the worker to
    send in parts.
    """
    check_values(body)
    key = _idempotency_key(body.get("idempotency_key"), idempotency_header)
    field = "params.text" if "method" in body else "text"
    _text_cap(_text_length(body), max_text_length, field)
    commands = [_general(body)] if "method" in body else _short(body, allowed_users)
    for command in commands:
        command.idempotency_key = key
        _long_text(command, long_text, field)
    return EnqueueRequest(commands, key)


def _text_cap(length: int, limit: int, field: str) -> None:
    if length > limit:
        raise InputError(
            f"{field} is {length} characters long; this gateway accepts at most {limit} "
            "([delivery] max_text_length)",
            code="text_too_large",
            field=field,
            status=413,
        )


def _long_text(command: Command, policy: LongText, field: str) -> None:
    text = command.params.get("text")
    if command.method not in ("sendMessage", "editMessageText") or not isinstance(text, str):
        return
    mode = command.params.get("parse_mode")
    if len(text) <= c.MAX_MESSAGE_LENGTH // 2 and not mode:
        return  # plain text that cannot be over the limit even in UTF-16 units
    try:
        length = visible_length(text, mode)
    except MarkupError as exc:
        raise InputError(f"{field}: {exc}", code="invalid_markup", field=field) from None
    if length <= c.MAX_MESSAGE_LENGTH:
        return
    if policy == "reject" or command.method == "editMessageText":
        raise InputError(
            f"{field} is {length} characters long; Telegram's limit is {c.MAX_MESSAGE_LENGTH}",
            code="text_too_long",
            field=field,
        )
    if policy == "truncate":
        command.params = {**command.params, "text": truncate_text(text, mode)}


def _general(body: dict[str, Any]) -> Command:
    extra = sorted(set(body) - {"method", "params"} - ENVELOPE_FIELDS)
    if extra:
        raise InputError(f"unknown field '{extra[0]}'", code="unknown_field", field=extra[0])
    method = body["method"]
    if not isinstance(method, str) or method not in c.ALLOWED_METHODS:
        allowed = ", ".join(c.ALLOWED_METHODS)
        raise InputError(f"method must be one of {allowed}", code="unknown_method", field="method")
    params = body.get("params")
    if not isinstance(params, dict):
        raise InputError("params must be a JSON object", code="invalid_type", field="params")
    if "chat_id" not in params:
        raise InputError("params.chat_id is required", code="missing_field", field="params.chat_id")
    params = {**params, "chat_id": _chat_id(params["chat_id"], "params.chat_id")}
    if method in MESSAGE_ID_METHODS and "message_id" not in params:
        raise InputError(
            "params.message_id is required", code="missing_field", field="params.message_id"
        )
    if method == "sendMessage":
        _text(params.get("text"), "params.text")
    _parse_mode(params.get("parse_mode"), "params.parse_mode")
    try:
        build_method(method, params)
    except InvalidParams as exc:
        field = f"params.{exc.field}" if exc.field else "params"
        raise InputError(f"params.{exc}", code="invalid_params", field=field) from None
    return Command(method=method, params=params)


#: Every field the short form knows.
SHORT_FORM_FIELDS = frozenset({"text", "expect_reply", *SHORT_FIELDS, *ENVELOPE_FIELDS})


def _short(body: dict[str, Any], allowed_users: Iterable[int]) -> list[Command]:
    for name in body:
        if name not in SHORT_FORM_FIELDS:
            raise InputError(f"unknown field '{name}'", code="unknown_field", field=name)
    if "text" not in body:
        raise InputError(
            "text is required (or use the general form with 'method' and 'params')",
            code="missing_field",
            field="text",
        )
    text = _text(body["text"], "text")
    for name, types in SHORT_FIELDS.items():
        value = body.get(name)
        if value is not None and (
            not isinstance(value, types) or isinstance(value, bool) != (bool in types)
        ):
            expected = " or ".join(_type_name(t) for t in types)
            raise InputError(f"{name} must be {expected}", code="invalid_type", field=name)
    _parse_mode(body.get("parse_mode"), "parse_mode")
    extras = {
        k: v for k, v in body.items() if k in SHORT_FIELDS and k != "chat_id" and v is not None
    }
    if body.get("chat_id") is not None:
        chats: list[int | str] = [_chat_id(body["chat_id"], "chat_id")]
    else:
        chats = sorted(allowed_users)
    expect = _expect_reply(body.get("expect_reply"))
    if expect is not None and "reply_markup" in extras:
        raise InputError(
            "reply_markup cannot be combined with expect_reply (it makes its own keyboard)",
            code="conflicting_fields",
            field="reply_markup",
        )
    commands: list[Command] = []
    # Scalars were checked above; objects (keyboards, link previews) are checked against
    # aiogram's model, once: the chat id does not change their validity.
    if any(isinstance(value, dict) for value in extras.values()):
        try:
            build_method(
                "sendMessage", {"chat_id": chats[0] if chats else 0, "text": text, **extras}
            )
        except InvalidParams as exc:
            raise InputError(str(exc), code="invalid_params", field=exc.field) from None
    for chat in chats:
        params = {"chat_id": chat, "text": text, **extras}
        if expect is None:
            commands.append(Command(method="sendMessage", params=params))
        else:
            commands.append(ask(params, **expect))
    return commands


EXPECT_FIELDS = frozenset({"buttons", "timeout_s", "callback_url", "answerers"})


def _expect_reply(value: Any) -> dict[str, Any] | None:
    """`expect_reply`: buttons (rows of labels) or free text, a timeout, a callback URL."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError(
            "expect_reply must be an object", code="invalid_type", field="expect_reply"
        )
    for name in value:
        if name not in EXPECT_FIELDS:
            field = f"expect_reply.{name}"
            raise InputError(f"unknown field '{field}'", code="unknown_field", field=field)
    buttons = value.get("buttons")
    if buttons is not None and not valid_buttons(buttons):
        raise InputError(
            "expect_reply.buttons must be 1-8 rows of 1-8 labels of 1-64 characters",
            code="invalid_buttons",
            field="expect_reply.buttons",
        )
    timeout = value.get("timeout_s", DEFAULT_QUESTION_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        timeout = -1
    if not 1 <= timeout <= MAX_QUESTION_TIMEOUT:
        raise InputError(
            f"expect_reply.timeout_s must be 1 to {MAX_QUESTION_TIMEOUT} seconds",
            code="invalid_timeout",
            field="expect_reply.timeout_s",
        )
    url = value.get("callback_url")
    if url is not None and not _http_url(url):
        raise InputError(
            "expect_reply.callback_url must be an http(s) URL",
            code="invalid_url",
            field="expect_reply.callback_url",
        )
    answerers = value.get("answerers")
    if answerers is not None and (
        not isinstance(answerers, list)
        or not answerers
        or not all(isinstance(a, int) and not isinstance(a, bool) for a in answerers)
    ):
        raise InputError(
            "expect_reply.answerers must be a non-empty list of user ids",
            code="invalid_type",
            field="expect_reply.answerers",
        )
    return {
        "buttons": buttons,
        "timeout_s": float(timeout),
        "callback_url": url,
        "answerers": answerers,
    }


def _text(value: Any, field: str) -> str:
    if value is None:
        raise InputError(f"{field} is required", code="missing_field", field=field)
    if not isinstance(value, str):
        raise InputError(f"{field} must be a string", code="invalid_type", field=field)
    if not value.strip():
        raise InputError(f"{field} must not be empty", code="empty_text", field=field)
    return value


def _chat_id(value: Any, field: str) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 2**53:
            raise InputError(f"{field} is out of range", code="invalid_chat_id", field=field)
        return value
    if isinstance(value, str):
        stripped = value.strip()
        # isdecimal, not isdigit: int() refuses digits like "²" (and "--5"), which was a 500.
        if stripped.removeprefix("-").isdecimal() and len(stripped) < 16:
            return int(stripped)
        if (
            stripped.startswith("@")
            and len(stripped) > 1
            and stripped[1:].replace("_", "").isalnum()
        ):
            return stripped
    raise InputError(
        f"{field} must be a numeric chat id or an @channelusername",
        code="invalid_chat_id",
        field=field,
    )


def _parse_mode(value: Any, field: str) -> None:
    if value is not None and value not in c.PARSE_MODES:
        raise InputError(
            f"{field} must be one of {', '.join(c.PARSE_MODES)}",
            code="invalid_parse_mode",
            field=field,
        )


def _idempotency_key(body_value: Any, header: str | None) -> str | None:
    value = body_value if body_value is not None else header
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not encodable(value):
        raise InputError(
            "idempotency_key must be a string of 1-255 characters",
            code="invalid_idempotency_key",
            field="idempotency_key",
        )
    return value


def _http_url(value: Any) -> bool:
    """An absolute http(s) URL with a host (and nothing `urlsplit` chokes on)."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        return False


def _type_name(t: type) -> str:
    return {int: "an integer", str: "a string", bool: "true or false", dict: "an object"}[t]
