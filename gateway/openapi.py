"""The REST API's contract: an OpenAPI 3.1 document, served at `GET /openapi.json`.

It is built from the same constants the code checks against (methods, parse modes, limits,
header names, the configured webhook path), and `tests/test_openapi.py` keeps the rest honest:
routes and error codes are compared with the code, and schemathesis fuzzes a live gateway
against it. The request schemas are never stricter than `validation.py`: a body the schema
rejects is one the gateway rejects too (the reverse need not hold).
"""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway import constants as c
from gateway.config import Config
from gateway.inlets.openapi import inlet_operation
from gateway.media.openapi import MEDIA_ERRORS, multipart_content
from gateway.openapi_schemas import (
    components,
    error_schema,
    json_content,
    ref,
)
from gateway.openapi_webhooks import outbound_webhooks

OPENAPI_VERSION = "3.1.0"

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
        "invalid_text",
        "out_of_range",
        "too_deep",
        "too_many_values",
        *MEDIA_ERRORS[400],
    ),
    403: ("forbidden_method", "forbidden_chat"),
    413: ("body_too_large", "text_too_large", *MEDIA_ERRORS[413]),
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
    413: "The body is over `[server] body_limit`, or a file over its `[media]` limit.",
    415: "The body is neither `application/json` nor `multipart/form-data`.",
}


def _error(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": json_content(error_schema(codes)),
    }


def _errors(table: dict[int, tuple[str, ...]]) -> dict[str, Any]:
    return {str(status): _error(status, codes) for status, codes in table.items()}


def _protected(responses: dict[str, Any]) -> dict[str, Any]:
    """Add the answers of the bearer-token check, of the storage and of any bug to an
    operation's own."""
    return {
        **responses,
        "401": ref("responses", "Unauthorized"),
        "429": ref("responses", "RateLimited"),
        "500": ref("responses", "InternalError"),
        "503": ref("responses", "StorageUnavailable"),
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
            {"name": "inlets", "description": "Called by other tools' webhooks."},
        ],
        "paths": {
            c.ENQUEUE_PATH: {"post": _enqueue_operation(config)},
            c.COMMANDS_PATH + "/{id}": {"get": _command_operation()},
            c.HEALTH_PATH: {"get": _health_operation()},
            c.METRICS_PATH: {"get": _metrics_operation()},
            c.OPENAPI_PATH: {"get": _openapi_operation()},
            config.telegram.webhook_path: {"post": _webhook_operation()},
            c.INLETS_PATH + "/{name}": {"post": inlet_operation()},
        },
        "webhooks": outbound_webhooks(),
        "components": components(),
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
        "parameters": [ref("parameters", "IdempotencyKey"), ref("parameters", "Signature")],
        "requestBody": {
            "required": True,
            "content": {
                **json_content(
                    {
                        "oneOf": [
                            ref("schemas", "ShortForm"),
                            ref("schemas", "MediaShortForm"),
                            ref("schemas", "GeneralForm"),
                        ]
                    }
                ),
                **multipart_content(),
            },
        },
        "responses": _protected(
            {
                "202": {
                    "description": "Queued. Several chats (short form without `chat_id`): "
                    "one command each, `id` is the first of `ids`.",
                    "content": json_content(ref("schemas", "Accepted")),
                },
                "200": {
                    "description": "A repeated idempotency key: nothing was queued; the "
                    "original command and its current status.",
                    "content": json_content(ref("schemas", "Duplicate")),
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
            ref("parameters", "Signature"),
        ],
        "responses": _protected(
            {
                "200": {
                    "description": "The command.",
                    "content": json_content(ref("schemas", "Command")),
                },
                **_errors(COMMAND_ERRORS),
            }
        ),
    }


def _health_operation() -> dict[str, Any]:
    return {
        "operationId": "healthz",
        "tags": ["operations"],
        "summary": "Whether the gateway can accept and deliver, and what holds work up",
        "security": [],
        "responses": {
            "200": {
                "description": "`ok`, or `degraded`: accepting works but delivery is held up "
                "(chats waiting or retrying, sending paused by Telegram); `reasons` says why.",
                "content": json_content(ref("schemas", "Health")),
            },
            "503": {
                "description": "`unavailable`: accepting would fail (storage) or the worker or "
                "the webhook is down; `reasons` says why.",
                "content": json_content(ref("schemas", "Health")),
            },
            "500": ref("responses", "InternalError"),
        },
    }


def _metrics_operation() -> dict[str, Any]:
    return {
        "operationId": "metrics",
        "tags": ["operations"],
        "summary": "Prometheus metrics",
        "parameters": [ref("parameters", "Signature")],
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
                "content": json_content({"type": "object"}),
            },
            "500": ref("responses", "InternalError"),
        },
    }


def _webhook_operation() -> dict[str, Any]:
    return {
        "operationId": "telegramWebhook",
        "tags": ["telegram"],
        "summary": "An Update pushed by Telegram",
        "description": "Once authentic and a JSON object with an integer `update_id`, an update "
        "is always acknowledged (Telegram would otherwise retry it for hours and hold back the "
        "updates behind it): when its handler fails, when aiogram cannot validate it (kept as a "
        "dead letter, handled as far as it can be read), and when it was handled before (not "
        "handled again). 403 when the source-address check is on and the caller is not one of "
        "Telegram's networks.",
        "security": [{"telegramSecretToken": []}],
        "requestBody": {
            "required": True,
            "content": json_content(
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
                "content": json_content(
                    {
                        "type": "object",
                        "required": ["ok"],
                        "properties": {"ok": {"const": True}},
                        "additionalProperties": False,
                    }
                ),
            },
            **_errors(WEBHOOK_ERRORS),
            "500": ref("responses", "InternalError"),
        },
    }
