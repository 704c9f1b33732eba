"""An update as Telegram sent it, before (or without) aiogram: its identity and what is usable.

A Bot API release can add a field this aiogram requires (a poll option's `persistent_id`), or
an update can carry a value aiogram refuses. Such an update must neither jam the webhook (a
non-2xx answer makes Telegram retry it for hours and hold back the updates behind it) nor
be lost: the webhook acknowledges it, keeps it as a dead letter, and hands the handlers a
reduced update built from the few fields they read — the sender, the chat, a message's text
and the message it replies to, a tap's data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from pydantic import ValidationError

#: Longest field path quoted in a log line or a dead letter.
MAX_FIELD_PATH: Final = 200
#: Longest update type quoted (Telegram's are short; anything else is cut).
MAX_TYPE_NAME: Final = 40
_USER_TEXT_FIELDS: Final = ("last_name", "username", "language_code")
_CHAT_TEXT_FIELDS: Final = ("title", "username", "first_name", "last_name")


def update_id(data: Any) -> int | None:
    """The update's `update_id`, if `data` is an object that has one: an integer that fits in
    64 bits (as Telegram's identifiers do, and as the dedup record stores it)."""
    number = _int(data.get("update_id")) if isinstance(data, dict) else None
    return number if number is not None and -(2**63) <= number < 2**63 else None


def digest(data: dict[str, Any], body: bytes) -> str:
    """A hash of the update's content (`data`, parsed from `body`), the same for every
    re-send of one update however its JSON is spaced or ordered."""
    try:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    except RecursionError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def kind(data: dict[str, Any]) -> str:
    """The update's type: its field besides `update_id` (`unknown` when there is none)."""
    found = next((key for key in data if key != "update_id"), "unknown")
    return found[:MAX_TYPE_NAME]


def first_failure(exc: ValidationError | RecursionError) -> str:
    """Where validation failed first, and why, without any value from the update."""
    if isinstance(exc, RecursionError):
        return "(update): nested too deeply"
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if not errors:
        return "(update): invalid"
    where = ".".join(str(part) for part in errors[0]["loc"]) or "(update)"
    return f"{where[:MAX_FIELD_PATH]}: {errors[0]['type']}"


def reduced(data: dict[str, Any]) -> dict[str, Any] | None:
    """The update cut down to what the gateway's handlers use; None if nothing is usable.

    A message keeps its id, date, chat, sender, text and the message it replies to (which
    a question's answer needs); a callback query its id, sender and data.
    """
    number = update_id(data)
    if number is None:
        return None
    message = data.get("message")
    if isinstance(message, dict):
        usable = _message(message, nested=False)
        return {"update_id": number, "message": usable} if usable else None
    query = data.get("callback_query")
    if isinstance(query, dict):
        sender = _user(query.get("from"))
        if not isinstance(query.get("id"), str) or sender is None:
            return None
        usable = {"id": query["id"], "from": sender, "chat_instance": ""}
        if isinstance(query.get("chat_instance"), str):
            usable["chat_instance"] = query["chat_instance"]
        if isinstance(query.get("data"), str):
            usable["data"] = query["data"]
        return {"update_id": number, "callback_query": usable}
    return None


def describe(usable: dict[str, Any] | None) -> str:
    """What a dead letter says was still handled."""
    if usable is None:
        return "not handled: no sender, chat or text the gateway could read"
    event_type = kind(usable)
    event = usable[event_type]
    who = f"user {event['from']['id']}" if "from" in event else "no sender"
    where = f" in chat {event['chat']['id']}" if "chat" in event else ""
    return f"handled as a reduced {event_type} from {who}{where}"


def _message(raw: dict[str, Any], *, nested: bool) -> dict[str, Any] | None:
    message_id = _int(raw.get("message_id"))
    chat = _chat(raw.get("chat"))
    if message_id is None or chat is None:
        return None
    usable: dict[str, Any] = {
        "message_id": message_id,
        "date": _int(raw.get("date")) or 0,
        "chat": chat,
    }
    sender = _user(raw.get("from"))
    if sender is not None:
        usable["from"] = sender
    if isinstance(raw.get("text"), str):
        usable["text"] = raw["text"]
    original = raw.get("reply_to_message")
    if not nested and isinstance(original, dict):
        replied = _message(original, nested=True)
        if replied is not None:
            usable["reply_to_message"] = replied
    return usable


def _user(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or _int(raw.get("id")) is None:
        return None
    first_name = raw.get("first_name")
    user: dict[str, Any] = {
        "id": raw["id"],
        "is_bot": raw.get("is_bot") is True,
        "first_name": first_name if isinstance(first_name, str) else "",
    }
    user.update({k: raw[k] for k in _USER_TEXT_FIELDS if isinstance(raw.get(k), str)})
    return user


def _chat(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or _int(raw.get("id")) is None:
        return None
    chat_type = raw.get("type")
    if not isinstance(chat_type, str):
        chat_type = "private" if raw["id"] > 0 else "supergroup"
    chat: dict[str, Any] = {"id": raw["id"], "type": chat_type}
    chat.update({k: raw[k] for k in _CHAT_TEXT_FIELDS if isinstance(raw.get(k), str)})
    return chat


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
