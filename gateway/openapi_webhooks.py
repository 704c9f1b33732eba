"""The OpenAPI `webhooks` section: what the gateway POSTs to internal services.

Two calls leave the gateway: a routed bot command to a route's `url`, and a question's outcome to
its `callback_url`. Both are signed with `X-Gateway-Signature` (the route's key, or the asking
client's callback key) and documented here so services can be generated from, or checked
against, the document.
"""

from __future__ import annotations

from typing import Any

SIGNATURE = {
    "name": "X-Gateway-Signature",
    "in": "header",
    "required": True,
    "description": 't=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<raw body>")>; reject it '
    "when older than five minutes or when the MAC does not match (constant-time compare).",
    "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
}

DISPATCH = {
    "type": "object",
    "required": ["id", "command", "args", "user", "chat", "message_id", "date"],
    "properties": {
        "id": {"type": "string", "description": "The dispatch id: use it as `reply_to`."},
        "command": {"type": "string", "description": "The route's command, without the /."},
        "args": {"type": "array", "items": {"type": "string"}},
        "text": {"type": "string", "description": "The whole message, as typed."},
        "user": {"type": "object", "description": "Telegram's User who sent the command."},
        "chat": {"type": "object", "description": "Telegram's Chat it was sent in."},
        "message_id": {"type": "integer"},
        "date": {"type": "integer", "description": "Unix time of the message."},
    },
}

SERVICE_ANSWER = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "Sent as a reply to the user's command."},
        "parse_mode": {"enum": ["HTML", "Markdown", "MarkdownV2"]},
        "buttons": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "string"}},
            "description": "Makes the answer a question; taps are POSTed back to the route's "
            "URL as a question outcome (with `dispatch_id`).",
        },
    },
}

OUTCOME = {
    "type": "object",
    "required": ["id", "status", "reply"],
    "properties": {
        "id": {"type": "string", "description": "The question's command id."},
        "status": {"enum": ["answered", "expired"]},
        "reply": {
            "type": "object",
            "properties": {
                "answer": {"type": ["string", "null"], "description": "Button label or text."},
                "by": {"type": ["object", "null"], "description": "Who answered (id, names)."},
                "at": {"type": "number", "description": "Unix time of the answer or expiry."},
            },
        },
        "dispatch_id": {"type": "string", "description": "When a service's answer asked."},
    },
}


def outbound_webhooks() -> dict[str, Any]:
    """The `webhooks` object of the OpenAPI document."""
    return {
        "commandDispatch": {
            "post": {
                "summary": "A user's bot command, sent to its route's url",
                "description": "Retried with backoff on 5xx, 429, timeouts and network errors "
                "(up to the route's max_attempts); never on other 4xx.",
                "parameters": [SIGNATURE],
                "requestBody": {"content": {"application/json": {"schema": DISPATCH}}},
                "responses": {
                    "200": {
                        "description": "The answer, sent to the user as a reply.",
                        "content": {
                            "application/json": {"schema": SERVICE_ANSWER},
                            "text/plain": {"schema": {"type": "string"}},
                        },
                    },
                    "202": {"description": "Answer later: POST /enqueue_command with reply_to."},
                },
            }
        },
        "questionOutcome": {
            "post": {
                "summary": "A question's answer (or expiry), sent to its callback_url",
                "description": "Signed with the asking API client's own callback key "
                "(HMAC-SHA256 of the client's name under the callback secret; `gateway token "
                "callback-key NAME` prints it), or with the route's key for a service's own "
                "question; retried until it answers 2xx, within the delivery budget. Sent only "
                "to addresses in `[server] callback_allowed_networks` (checked when the "
                "question is accepted and again when connecting); redirects are not followed.",
                "parameters": [SIGNATURE],
                "requestBody": {"content": {"application/json": {"schema": OUTCOME}}},
                "responses": {"200": {"description": "Received (any 2xx)."}},
            }
        },
    }
