"""Media requests checked at the door: the short form's file fields, albums and captions.

The short form grows `photo` / `document` / `video` / `audio` (one file, `text` becoming its
caption) and `media` (an album); each becomes the general form of the matching method, once per
chat, and then goes through the same checks as any general-form request.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway import constants as c
from gateway.commands import Command
from gateway.configvalues import LongText
from gateway.errors import InputError
from gateway.media.refs import CAPTION_METHODS, CAPTION_REST_KEY, SHORT_FILE_FIELDS, SINGLE_FILE
from gateway.split import MarkupError, split_text, truncate_text, visible_length

#: Short-form fields a media message may carry beside its file and `text`.
SHORT_MEDIA_EXTRAS = frozenset(
    {
        "chat_id",
        "parse_mode",
        "disable_notification",
        "protect_content",
        "reply_markup",
        "message_thread_id",
        "reply_parameters",
        "idempotency_key",
    }
)
ALBUM_TYPES = frozenset({"photo", "video", "document", "audio"})


def short_media_bodies(body: dict[str, Any], allowed_users: Iterable[int]) -> list[dict[str, Any]]:
    """A short-form media body as general-form bodies (one per chat); other bodies as they are."""
    if "method" in body:
        return [body]
    fields = [name for name in (*SHORT_FILE_FIELDS, "media") if name in body]
    if not fields:
        return [body]
    if len(fields) > 1:
        raise InputError(
            f"{fields[0]} and {fields[1]} cannot be combined: one file or one album per request",
            code="conflicting_fields",
            field=fields[1],
        )
    field = fields[0]
    for name in body:
        if name not in SHORT_MEDIA_EXTRAS and name not in (field, "text"):
            raise InputError(f"unknown field '{name}'", code="unknown_field", field=name)
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError("text must be a string", code="invalid_type", field="text")
    params = {k: v for k, v in body.items() if k not in ("text", "idempotency_key", field)}
    if field == "media":
        method, params["media"] = "sendMediaGroup", _album(body["media"], text, body)
        if "reply_markup" in params:
            raise InputError(
                "an album cannot carry reply_markup",
                code="conflicting_fields",
                field="reply_markup",
            )
        params.pop("parse_mode", None)
    else:
        method, params[field] = SHORT_FILE_FIELDS[field], body[field]
        if text:
            params["caption"] = text
    chats = [body["chat_id"]] if body.get("chat_id") is not None else sorted(allowed_users)
    envelope = {"idempotency_key": body["idempotency_key"]} if "idempotency_key" in body else {}
    return [{"method": method, "params": {**params, "chat_id": chat}, **envelope} for chat in chats]


def _album(media: Any, text: str | None, body: dict[str, Any]) -> list[Any]:
    if not isinstance(media, list):
        raise InputError("media must be an array of files", code="invalid_type", field="media")
    items: list[Any] = []
    for index, item in enumerate(media):
        items.append(dict(item) if isinstance(item, dict) else item)
        if isinstance(item, dict) and index == 0 and text and "caption" not in item:
            items[0]["caption"] = text
            if body.get("parse_mode"):
                items[0]["parse_mode"] = body["parse_mode"]
    return items


def check_album(command: Command) -> None:
    """sendMediaGroup: 2-10 items; photos and videos mix, documents and audio only with their
    own kind (Telegram's rules, checked before anything is queued)."""
    if command.method != "sendMediaGroup":
        return
    media = command.params.get("media")
    low, high = c.ALBUM_SIZE_RANGE
    if not isinstance(media, list) or not low <= len(media) <= high:
        raise InputError(
            f"params.media must hold {low} to {high} items",
            code="invalid_album",
            field="params.media",
        )
    kinds = {str(item.get("type")) for item in media if isinstance(item, dict)}
    for kind in ("document", "audio"):
        if kind in kinds and len(kinds) > 1:
            raise InputError(
                f"params.media: {kind} items can only be grouped with other {kind} items",
                code="invalid_album",
                field="params.media",
            )


def check_captions(command: Command, policy: LongText) -> None:
    """Captions over Telegram's 1,024 characters, per `[delivery] long_text`: `split` sends a
    single file with the first part and the rest as text replies (other captions are refused
    then), `truncate` shortens them, `reject` refuses them."""
    if command.method in CAPTION_METHODS:
        holders: list[tuple[dict[str, Any], str]] = [(command.params, "params.caption")]
    elif command.method == "sendMediaGroup" and isinstance(command.params.get("media"), list):
        holders = [
            (item, f"params.media[{index}].caption")
            for index, item in enumerate(command.params["media"])
            if isinstance(item, dict)
        ]
    elif command.method == "editMessageMedia" and isinstance(command.params.get("media"), dict):
        holders = [(command.params["media"], "params.media.caption")]
    else:
        return
    for holder, field in holders:
        caption = holder.get("caption")
        if not isinstance(caption, str):
            continue
        mode = holder.get("parse_mode")
        try:
            length = visible_length(caption, mode)
        except MarkupError as exc:
            raise InputError(f"{field}: {exc}", code="invalid_markup", field=field) from None
        if length <= c.MAX_CAPTION_LENGTH:
            continue
        if policy == "split" and holder is command.params and command.method in SINGLE_FILE:
            # The file goes with the first part; the rest follow as text replies to it.
            parts = split_text(caption, mode, c.MAX_CAPTION_LENGTH)
            holder["caption"] = parts[0]
            command.meta[CAPTION_REST_KEY] = parts[1:]
            continue
        if policy != "truncate":
            raise InputError(
                f"{field} is {length} characters long; Telegram's limit for captions is "
                f"{c.MAX_CAPTION_LENGTH}",
                code="caption_too_long",
                field=field,
            )
        holder["caption"] = truncate_text(caption, mode, c.MAX_CAPTION_LENGTH)
