"""The REST API's contract: an OpenAPI 3.1 document, served at `GET /openapi.json`.

It is built from the same constants the code checks against (methods, parse modes, limits,
header names, the configured webhook path), and `tests/test_openapi.py` keeps the rest honest:
routes and error codes are compared with the code, and schemathesis fuzzes a live gateway
against it. The request schemas are never stricter than `validation.py`: a body the schema
rejects is one the gateway rejects too (the reverse need not hold).
"""

from __future__ import annotations

import inspect
from typing import Any

from gateway import __version__
from gateway import constants as c
from gateway.commands import Status
from gateway.config import Config
from gateway.guards import SIGNATURE_HEADER, SIGNATURE_WINDOW_SECONDS
from gateway.openapi_webhooks import outbound_webhooks
from gateway.questions import MAX_BUTTON_TEXT, MAX_COLUMNS, MAX_ROWS
from gateway.validation import DEFAULT_QUESTION_TIMEOUT, MAX_QUESTION_TIMEOUT

OPENAPI_VERSION = "3.1.0"
#: Largest chat id magnitude the gateway accepts (ids must fit a double exactly).
MAX_CHAT_ID = 2**53 - 1

#: The error codes each operation can answer with, by status (the `code` of the error body).
#: Every protected operation can also answer 401 `unauthorized` and 429 `rate_limited`, and
#: every operation 500 `internal_error`.
ENQUEUE_ERRORS: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_json",
        "unknown_field",
        "missing_field",
        "invalid_type",
        "empty_text",
        "invalid_chat_id",
        "invalid_parse_mode",
        "unknown_method",
        "invalid_params",
        "invalid_markup",
        "text_too_long",
        "invalid_idempotency_key",
        "conflicting_fields",
        "unknown_dispatch",
        "invalid_buttons",
        "invalid_timeout",
        "invalid_url",
    ),
    403: ("forbidden_method", "forbidden_chat"),
    413: ("body_too_large",),
    415: ("unsupported_media_type",),
}
COMMAND_ERRORS: dict[int, tuple[str, ...]] = {400: ("invalid_wait",), 404: ("not_found",)}
WEBHOOK_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("invalid_update",),
    401: ("unauthorized",),
    403: ("forbidden",),
    413: ("body_too_large",),
    415: ("unsupported_media_type",),
}

_ERROR_DESCRIPTIONS = {
    400: "Invalid input; `field` names the offending field.",
    401: "Wrong or missing credentials.",
    403: "Refused.",
    404: "Not found.",
    413: "The body is over `[server] body_limit`.",
    415: "The body is not `application/json`.",
}


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The short form treats `null` as "not given" for its optional fields."""
    return {"oneOf": [schema, {"type": "null"}]}


def _error_schema(codes: tuple[str, ...]) -> dict[str, Any]:
    """The error shape, with `code` narrowed to what this response can carry."""
    narrowed = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
    return {"allOf": [_ref("schemas", "Error"), narrowed]}


def _error(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": _json(_error_schema(codes)),
    }


def _errors(table: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    return {str(status): _error(status, codes) for status, codes in table.items()}


def _protected(responses: dict[str, Any]) -> dict[str, Any]:
    """Add the answers of the bearer-token check (and of any bug) to an operation's own."""
    return {
        **responses,
        "401": _ref("responses", "Unauthorized"),
        "429": _ref("responses", "RateLimited"),
        "500": _ref("responses", "InternalError"),
    }


def build_openapi(config: Config) -> dict[str, Any]:
    """The OpenAPI document of this gateway's REST API (and of its Telegram webhook)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Telegram Gateway",
            "version": __version__,
            "description": (
                "Puts a Telegram bot behind a REST API: services enqueue messages (or "
                "allow-listed Bot API calls) and read back what became of them. Errors always "
                'look like `{"error": {"code", "message", "field"?}}`; a method a path does '
                "not support is answered 405 `method_not_allowed` with an `Allow` header."
            ),
        },
        "servers": [{"url": config.public_url}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "commands", "description": "Sending messages and following them."},
            {"name": "operations", "description": "Health, metrics and this document."},
            {"name": "telegram", "description": "Called by Telegram only."},
        ],
        "paths": {
            c.ENQUEUE_PATH: {"post": _enqueue_operation(config)},
            c.COMMANDS_PATH + "/{id}": {"get": _command_operation()},
            c.HEALTH_PATH: {"get": _health_operation()},
            c.METRICS_PATH: {"get": _metrics_operation()},
            c.OPENAPI_PATH: {"get": _openapi_operation()},
            config.telegram.webhook_path: {"post": _webhook_operation()},
        },
        "webhooks": outbound_webhooks(),
        "components": _components(),
    }


def _enqueue_operation(config: Config) -> dict[str, Any]:
    return {
        "operationId": "enqueueCommand",
        "tags": ["commands"],
        "summary": "Queue a message (short form) or an allow-listed Bot API call (general form)",
        "description": (
            "The command is stored before the answer. Long texts (over "
            f"{c.MAX_MESSAGE_LENGTH} characters) are handled per `[delivery] long_text`, here "
            f"`{config.delivery.long_text}`: `split` sends them in parts, `truncate` shortens "
            "them, `reject` refuses them (400 `text_too_long`, as `editMessageText` always does)."
        ),
        "parameters": [_ref("parameters", "IdempotencyKey"), _ref("parameters", "Signature")],
        "requestBody": {
            "required": True,
            "content": _json(
                {"oneOf": [_ref("schemas", "ShortForm"), _ref("schemas", "GeneralForm")]}
            ),
        },
        "responses": _protected(
            {
                "202": {
                    "description": "Queued. Several chats (short form without `chat_id`): "
                    "one command each, `id` is the first of `ids`.",
                    "content": _json(_ref("schemas", "Accepted")),
                },
                "200": {
                    "description": "A repeated idempotency key: nothing was queued; the "
                    "original command and its current status.",
                    "content": _json(_ref("schemas", "Duplicate")),
                },
                **_errors(ENQUEUE_ERRORS),
            }
        ),
    }


def _command_operation() -> dict[str, Any]:
    return {
        "operationId": "getCommand",
        "tags": ["commands"],
        "summary": "A command's status, Telegram's answer or the reason it failed",
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The id `POST /enqueue_command` answered.",
                "schema": {"type": "string"},
            },
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "Hold the request up to this many seconds until the status "
                "is final.",
                "schema": {"type": "number", "minimum": 0, "maximum": c.MAX_WAIT_SECONDS},
            },
            _ref("parameters", "Signature"),
        ],
        "responses": _protected(
            {
                "200": {
                    "description": "The command.",
                    "content": _json(_ref("schemas", "Command")),
                },
                **_errors(COMMAND_ERRORS),
            }
        ),
    }


def _health_operation() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "tags": ["operations"],
        "summary": "Whether the worker runs and Telegram has the webhook",
        "security": [],
        "responses": {
            "200": {"description": "Healthy.", "content": _json(_ref("schemas", "Healthy"))},
            "503": {
                "description": "Unhealthy, saying what is missing.",
                "content": _json(_ref("schemas", "Unhealthy")),
            },
            "500": _ref("responses", "InternalError"),
        },
    }


def _metrics_operation() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "tags": ["operations"],
        "summary": "Prometheus metrics",
        "parameters": [_ref("parameters", "Signature")],
        "responses": _protected(
            {
                "200": {
                    "description": "Prometheus' text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            }
        ),
    }


def _openapi_operation() -> dict[str, Any]:
    return {
        "operationId": "openapi",
        "tags": ["operations"],
        "summary": "This document",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "content": _json({"type": "object"}),
            },
            "500": _ref("responses", "InternalError"),
        },
    }


def _webhook_operation() -> dict[str, Any]:
    return {
        "operationId": "telegramWebhook",
        "tags": ["telegram"],
        "summary": "An Update pushed by Telegram",
        "description": "Once authentic and well-formed, an update is always acknowledged, even "
        "when its handler fails (Telegram would otherwise retry it for hours). 403 when the "
        "source-address check is on and the caller is not one of Telegram's networks.",
        "security": [{"telegramSecretToken": []}],
        "requestBody": {
            "required": True,
            "content": _json(
                {
                    "type": "object",
                    "description": "A Bot API Update.",
                    "required": ["update_id"],
                    "properties": {"update_id": {"type": "integer"}},
                }
            ),
        },
        "responses": {
            "200": {
                "description": "Acknowledged.",
                "content": _json(
                    {
                        "type": "object",
                        "required": ["ok"],
                        "properties": {"ok": {"const": True}},
                        "additionalProperties": False,
                    }
                ),
            },
            **_errors(WEBHOOK_ERRORS),
            "500": _ref("responses", "InternalError"),
        },
    }


def _components() -> dict[str, Any]:
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
                "content": _json(_error_schema(("unauthorized",))),
            },
            "RateLimited": {
                "description": "Over the client's `rate_per_second`.",
                "headers": {
                    "Retry-After": {
                        "required": True,
                        "description": "Seconds until a request will be accepted.",
                        "schema": {"type": "integer", "minimum": 1},
                    },
                },
                "content": _json(_error_schema(("rate_limited",))),
            },
            "InternalError": {
                "description": "A bug; the gateway's log has the traceback.",
                "content": _json(_error_schema(("internal_error",))),
            },
        },
        "schemas": _schemas(),
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
                "chat_id": _nullable(_ref("schemas", "ChatId")),
                "parse_mode": parse_mode,
                "disable_notification": {"type": ["boolean", "null"]},
                "protect_content": {"type": ["boolean", "null"]},
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
                "expect_reply": _nullable(_ref("schemas", "ExpectReply")),
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
                    "description": "An http(s) URL the outcome is POSTed to, signed.",
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
                        "chat_id": _ref("schemas", "ChatId"),
                        "text": {"type": "string"},
                        "parse_mode": parse_mode,
                    },
                },
                "idempotency_key": idempotency_key,
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
        "Healthy": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
            "additionalProperties": False,
        },
        "Unhealthy": {
            "type": "object",
            "required": ["status", "worker", "webhook"],
            "properties": {
                "status": {"const": "unavailable"},
                "worker": {"enum": ["running", "stopped"]},
                "webhook": {"enum": ["set", "not set"]},
                "detail": {"type": "string"},
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
