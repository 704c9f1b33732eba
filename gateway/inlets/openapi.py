"""The inlets' route in the OpenAPI document (gateway/openapi.py)."""

from __future__ import annotations

from typing import Any

from gateway.openapi_schemas import error_schema, json_content, ref

#: status → (description, the error codes it can carry).
ERRORS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: (
        "The body is not JSON, or not the inlet kind's format; `field` names what is missing.",
        ("invalid_json", "invalid_payload"),
    ),
    401: ("Wrong or missing credential for the inlet's kind.", ("unauthorized",)),
    404: ("No inlet of that name.", ("not_found",)),
    413: ("The body is over `[server] body_limit`.", ("body_too_large",)),
}


def inlet_operation() -> dict[str, Any]:
    """`POST /inlets/{name}`."""
    answer = {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    }
    return {
        "operationId": "inlet",
        "tags": ["inlets"],
        "summary": "A webhook of another tool (Alertmanager, Grafana, GitHub, GitLab, any JSON)",
        "description": "Not for API clients: each inlet has its own secret, presented as its "
        "kind's tool does (`Authorization: Bearer` for alertmanager and grafana, "
        "`X-Hub-Signature-256` for github, `X-Gitlab-Token` for gitlab, either of the first two "
        "for generic). 202 once the messages are stored; 200 for a ping, a filtered event or a "
        "repeat (nothing queued). See README, Inlets.",
        "security": [],
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            }
        ],
        "requestBody": {
            "required": True,
            "content": json_content(
                {"type": ["object", "array"], "description": "The tool's own payload."}
            ),
        },
        "responses": {
            "202": {"description": "Stored for delivery.", "content": json_content(answer)},
            "200": {
                "description": "Ignored (a ping, a filtered event) or a repeat.",
                "content": json_content(answer),
            },
            **{
                str(status): {
                    "description": description,
                    "content": json_content(error_schema(codes)),
                }
                for status, (description, codes) in ERRORS.items()
            },
            "500": ref("responses", "InternalError"),
            "503": ref("responses", "StorageUnavailable"),
        },
    }
