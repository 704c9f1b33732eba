"""The OpenAPI pieces of files: the media short form and the multipart/form-data body."""

from __future__ import annotations

from typing import Any

from gateway import constants as c
from gateway.media.checks import ALBUM_TYPES
from gateway.media.refs import SHORT_FILE_FIELDS

#: Error codes the media checks answer `POST /enqueue_command` with, by status.
MEDIA_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_multipart",
        "too_many_files",
        "empty_file",
        "unknown_attachment",
        "unreferenced_file",
        "invalid_album",
        "caption_too_long",
        "forbidden_url",
        "fetch_failed",
        "no_recipients",
    ),
    413: ("file_too_large",),
}

FILE_VALUE = {
    "type": "string",
    "minLength": 1,
    "description": "`attach://<part name>` (a file part of a multipart request), an http(s) "
    'URL (Telegram fetches it; with `"fetch": true` the gateway does, from `[media] '
    "fetch_allowed_networks` only), or a `file_id`.",
}
FETCH = {
    "type": ["boolean", "null"],
    "description": "The gateway downloads the http(s) file URLs itself (for internal hosts "
    "Telegram cannot reach), before answering; only from `[media] fetch_allowed_networks` "
    "(empty by default: 400 `forbidden_url`).",
}


def media_schemas(idempotency_key: dict[str, Any], parse_mode: dict[str, Any]) -> dict[str, Any]:
    """`MediaShortForm` and `InputMedia`."""
    low, high = c.ALBUM_SIZE_RANGE
    files: dict[str, Any] = {name: FILE_VALUE for name in SHORT_FILE_FIELDS}
    return {
        "InputMedia": {
            "type": "object",
            "required": ["type", "media"],
            "properties": {
                "type": {"enum": sorted(ALBUM_TYPES)},
                "media": FILE_VALUE,
                "caption": {"type": "string"},
                "parse_mode": parse_mode,
            },
        },
        "MediaShortForm": {
            "type": "object",
            "description": "One file (`photo`, `document`, `video` or `audio`) or an album "
            f"(`media`, {low}-{high} items: photos and videos mix, documents and audio only "
            "with their own kind), with `text` as its caption (at most "
            f"{c.MAX_CAPTION_LENGTH} characters); to one chat, or to every allowed user "
            "without `chat_id`.",
            "oneOf": [{"required": [name]} for name in (*SHORT_FILE_FIELDS, "media")],
            "properties": {
                **files,
                "media": {
                    "type": "array",
                    "minItems": low,
                    "maxItems": high,
                    "items": {"$ref": "#/components/schemas/InputMedia"},
                },
                "text": {"type": ["string", "null"]},
                "chat_id": {"oneOf": [{"$ref": "#/components/schemas/ChatId"}, {"type": "null"}]},
                "parse_mode": parse_mode,
                "disable_notification": {"type": ["boolean", "null"]},
                "protect_content": {"type": ["boolean", "null"]},
                "message_thread_id": {"type": ["integer", "null"], "minimum": 1},
                "reply_parameters": {"type": ["object", "null"]},
                "reply_markup": {"type": ["object", "null"]},
                "idempotency_key": idempotency_key,
                "fetch": FETCH,
            },
            "additionalProperties": False,
        },
    }


def multipart_content() -> dict[str, Any]:
    """`multipart/form-data`: the JSON body in a `payload` part, plus file parts."""
    return {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "description": f"A `{c.PAYLOAD_PART}` part holding the same JSON body as the "
                "JSON form, plus up to 10 file parts referenced from it as "
                "`attach://<part name>` (names of letters, digits, `_`, `-`, `.`). Files are "
                "streamed to disk and synced before the answer; over `[media] "
                "max_upload_bytes` (50 MB) or, for photos, `max_photo_bytes` (10 MB): 413 "
                "`file_too_large`.",
                "required": [c.PAYLOAD_PART],
                "properties": {c.PAYLOAD_PART: {"type": "string"}},
                "additionalProperties": {"type": "string", "format": "binary"},
            },
            "encoding": {c.PAYLOAD_PART: {"contentType": "application/json"}},
        }
    }
