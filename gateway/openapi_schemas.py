"""Schema pieces of the OpenAPI document: components (schemas, responses, security schemes).

Kept apart from `gateway.openapi`, which assembles the operations, so neither grows past a
screenful of concerns.
"""

from __future__ import annotations

import inspect
from typing import Any

from gateway import constants as c
from gateway.commands import Status
from gateway.guards import SIGNATURE_HEADER, SIGNATURE_WINDOW_SECONDS
from gateway.media.openapi import FETCH, media_schemas
from gateway.questions import MAX_BUTTON_TEXT, MAX_COLUMNS, MAX_ROWS
from gateway.validation import DEFAULT_QUESTION_TIMEOUT, MAX_QUESTION_TIMEOUT

#: Largest chat id magnitude the gateway accepts (ids must fit a double exactly).
MAX_CHAT_ID = 2**53 - 1


def ref(kind: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The short form treats `null` as "not given" for its optional fields."""
    return {"oneOf": [schema, {"type": "null"}]}


def error_schema(codes: tuple[str, ...]) -> dict[str, Any]:
    """The error shape, with `code` narrowed to what this response can carry."""
    narrowed = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
    return {"allOf": [ref("schemas", "Error"), narrowed]}


def components() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API client's token (`gateway token add NAME`).",
            },
            "telegramSecretToken": {
                "type": "apiKey",
                "in": "header",
                "name": c.SECRET_TOKEN_HEADER,
                "description": "The secret given to Telegram with setWebhook.",
            },
        },
        "parameters": {
            "IdempotencyKey": {
                "name": c.IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "description": "Like the body's `idempotency_key`, 1 to 255 characters, and "
                "ignored when the body has one: a repeat within 24 h gets 200 and the original "
                "command.",
                "schema": {"type": "string"},
            },
            "Signature": {
                "name": SIGNATURE_HEADER,
                "in": "header",
                "required": False,
                "description": "Required of clients with a signing secret: "
                '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, within '
                f"{SIGNATURE_WINDOW_SECONDS} s of the gateway's clock, each signature once.",
                "schema": {"type": "string"},
            },
        },
        "responses": {
            "Unauthorized": {
                "description": "Missing, invalid or revoked token, or a bad signature.",
                "headers": {
                    "WWW-Authenticate": {"required": True, "schema": {"type": "string"}},
                },
                "content": json_content(error_schema(("unauthorized",))),
            },
            "RateLimited": {
                "description": "Over the client's `rate_per_second`.",
                "headers": _retry_after("Seconds until a request will be accepted."),
                "content": json_content(error_schema(("rate_limited",))),
            },
            "StorageUnavailable": {
                "description": "The queue's storage failed (disk full, read-only, locked, "
                "vanished, or a write not confirmed by the disk): a command may or may not be "
                "stored (and delivered). Retry after Retry-After, with an idempotency key.",
                "headers": _retry_after("Seconds to wait before retrying."),
                "content": json_content(error_schema(("storage_unavailable",))),
            },
            "InternalError": {
                "description": "A bug; the gateway's log has the traceback.",
                "content": json_content(error_schema(("internal_error",))),
            },
        },
        "schemas": _schemas(),
    }


def _retry_after(description: str) -> dict[str, Any]:
    return {
        "Retry-After": {
            "required": True,
            "description": description,
            "schema": {"type": "integer", "minimum": 1},
        }
    }


def _schemas() -> dict[str, Any]:
    parse_mode = {"enum": [*c.PARSE_MODES, None]}
    idempotency_key = {
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": 255,
        "description": "Makes a retried POST safe: a repeat within 24 h gets 200 and "
        f"the original command. Overrides the `{c.IDEMPOTENCY_HEADER}` header.",
    }
    status = {"type": "string", "enum": [s.value for s in Status]}
    return {
        **media_schemas(idempotency_key, parse_mode),
        "ChatId": {
            "oneOf": [
                {"type": "integer", "minimum": -MAX_CHAT_ID, "maximum": MAX_CHAT_ID},
                {
                    "type": "string",
                    "minLength": 1,
                    "description": 'A numeric id as a string ("-1001234567890"), or '
                    '"@channelusername".',
                },
            ]
        },
        "ShortForm": {
            "type": "object",
            "description": "A text to one chat, or to every allowed user without `chat_id`. "
            "`null` counts as not given.",
            "required": ["text"],
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Must contain a non-space character.",
                },
                "chat_id": nullable(ref("schemas", "ChatId")),
                "parse_mode": parse_mode,
                "disable_notification": {"type": ["boolean", "null"]},
                "protect_content": {"type": ["boolean", "null"]},
                "message_thread_id": {
                    "type": ["integer", "null"],
                    "description": "A forum topic of the chat (`[[chat_defaults]]` may name one).",
                },
                "fetch": FETCH,
                "link_preview_options": {
                    "type": ["object", "null"],
                    "description": "A Bot API LinkPreviewOptions.",
                },
                "reply_markup": {
                    "type": ["object", "null"],
                    "description": "A Bot API InlineKeyboardMarkup, ReplyKeyboardMarkup, "
                    "ReplyKeyboardRemove or ForceReply.",
                },
                "idempotency_key": idempotency_key,
                "reply_to": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "description": "Answer a user's bot command: the id of the `dispatch` "
                    "command it became. The message goes to that chat as a reply (`chat_id` may "
                    "be left out; 400 `conflicting_fields` if it differs).",
                },
                "expect_reply": nullable(ref("schemas", "ExpectReply")),
            },
            "additionalProperties": False,
        },
        "ExpectReply": {
            "type": "object",
            "description": "Ask a question: the command becomes `awaiting_reply` once sent, "
            "then `answered` (its `reply`) or `expired`. Not with `reply_markup`.",
            "properties": {
                "buttons": {
                    "type": ["array", "null"],
                    "description": "Rows of button labels; without them, a free-text reply.",
                    "minItems": 1,
                    "maxItems": MAX_ROWS,
                    "items": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_COLUMNS,
                        "items": {
                            "type": "string",
                            "minLength": 1,
                            "description": f"1 to {MAX_BUTTON_TEXT} characters, spaces "
                            "around them not counted.",
                        },
                    },
                },
                "timeout_s": {
                    "type": "number",
                    "minimum": 1,
                    "maximum": MAX_QUESTION_TIMEOUT,
                    "default": DEFAULT_QUESTION_TIMEOUT,
                },
                "callback_url": {
                    "type": ["string", "null"],
                    "description": "An http(s) URL the outcome is POSTed to, signed with "
                    "the client's callback key. Its address must lie in `[server] "
                    "callback_allowed_networks` (none by default: 400 `forbidden_url`); "
                    "`user@host` URLs are refused.",
                },
                "answerers": {
                    "type": ["array", "null"],
                    "minItems": 1,
                    "items": {"type": "integer"},
                    "description": "User ids who may answer (default: the allowed users).",
                },
            },
            "additionalProperties": False,
        },
        "GeneralForm": {
            "type": "object",
            "required": ["method", "params"],
            "properties": {
                "method": {"type": "string", "enum": list(c.ALLOWED_METHODS)},
                "params": {
                    "type": "object",
                    "description": "The method's Bot API parameters, checked against "
                    "aiogram's model of it: `message_id` is required by the edit and delete "
                    "methods, `text` by sendMessage and editMessageText.",
                    "required": ["chat_id"],
                    "properties": {
                        "chat_id": ref("schemas", "ChatId"),
                        "text": {"type": "string"},
                        "parse_mode": parse_mode,
                    },
                },
                "idempotency_key": idempotency_key,
                "fetch": FETCH,
                "reply_to": {"type": "null", "description": "Only with the short form."},
            },
            "additionalProperties": False,
        },
        "Accepted": {
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": {"type": "string"},
                "status": status,
                "ids": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            },
            "additionalProperties": False,
        },
        "Duplicate": {
            "type": "object",
            "required": ["id", "status", "duplicate"],
            "properties": {
                "id": {"type": "string"},
                "status": status,
                "duplicate": {"const": True},
            },
            "additionalProperties": False,
        },
        "Command": {
            "type": "object",
            "required": [
                "id",
                "status",
                "method",
                "chat_id",
                "attempts",
                "created_at",
                "updated_at",
                "result",
                "error",
            ],
            "properties": {
                "id": {"type": "string"},
                "status": {**status, "description": inspect.cleandoc(Status.__doc__ or "")},
                "method": {
                    "type": "string",
                    "description": "One of the allow-listed methods; the gateway's own "
                    "commands a client may see have others (`dispatch`, `callback`).",
                },
                "chat_id": {"type": ["integer", "string", "null"]},
                "attempts": {"type": "integer", "minimum": 0},
                "created_at": {"type": "number", "description": "Unix time."},
                "updated_at": {"type": "number", "description": "Unix time."},
                "result": {
                    "description": "Telegram's answer once sent: the Message, or the list of "
                    "Messages of a split text."
                },
                "error": {
                    "oneOf": [
                        {
                            "type": "object",
                            "description": "From Telegram or the gateway, e.g. `forbidden`.",
                            "required": ["code", "description"],
                            "properties": {
                                "code": {"type": "string"},
                                "description": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                        {"type": "null"},
                    ]
                },
                "reply": {
                    "type": "object",
                    "description": "Only for a question (`expect_reply`), once `answered` or "
                    "`expired`: the answer (null when expired), who gave it, and when.",
                    "properties": {
                        "answer": {"type": ["string", "null"]},
                        "by": {"type": ["object", "null"]},
                        "at": {"type": "number"},
                    },
                },
            },
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "required": ["status", "reasons", "worker", "webhook", "storage"],
            "properties": {
                "status": {"enum": ["ok", "degraded", "unavailable"]},
                "reasons": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Empty when `ok`; one sentence per problem otherwise.",
                },
                "worker": {"enum": ["running", "stopped"]},
                "webhook": {"enum": ["set", "not set"]},
                "storage": {"enum": ["ok", "unavailable"]},
                "held_chats": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Chats whose oldest message has waited over "
                    f"{c.HELD_LANE_SECONDS:g} s or failed an attempt.",
                },
                "paused_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "description": "How long Telegram's bot-wide flood pause still holds "
                    "every send.",
                },
                "detail": {"type": "string", "description": "The webhook's last error."},
            },
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "The offending field."},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
    }
