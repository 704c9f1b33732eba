"""Bot API answers: the `{"ok": ...}` envelope and the errors Telegram gives.

Descriptions follow Telegram's wording: a prefix per status (`Bad Request: `, `Forbidden: `,
`Too Many Requests: `, ...) and the reason in lower case after it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

_PREFIXES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """A Bot API error answer: HTTP status = ``error_code``, plus optional parameters."""

    def __init__(
        self,
        error_code: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters or {}

    def response(self) -> web.Response:
        """The JSON answer, with `Retry-After` when the error carries ``retry_after``."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        headers = {}
        if "retry_after" in self.parameters:
            headers["Retry-After"] = str(self.parameters["retry_after"])
        return json_response(body, status=self.error_code, headers=headers)


def bad_request(reason: str) -> ApiError:
    """400 `Bad Request: <reason>`."""
    return ApiError(400, f"Bad Request: {reason}")


def forbidden(reason: str) -> ApiError:
    """403 `Forbidden: <reason>`."""
    return ApiError(403, f"Forbidden: {reason}")


def conflict(reason: str) -> ApiError:
    """409 `Conflict: <reason>`."""
    return ApiError(409, f"Conflict: {reason}")


def too_many_requests(retry_after: float) -> ApiError:
    """429 `Too Many Requests: retry after N`, N the whole seconds (rounded up, at least 1)."""
    seconds = max(1, math.ceil(retry_after))
    return ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


def status_error(status: int) -> ApiError:
    """A bare status answer such as 401 `Unauthorized`, 404 `Not Found` or 502 `Bad Gateway`."""
    return ApiError(status, _PREFIXES.get(status, "Internal Server Error"))


@dataclass(frozen=True)
class Described:
    """A successful result that also carries a `description`, as setWebhook's answers do."""

    result: Any
    description: str


def ok_response(result: Any) -> web.Response:
    """The success envelope `{"ok": true, "result": ...}`."""
    body: dict[str, Any] = {"ok": True}
    if isinstance(result, Described):
        body["result"] = result.result
        body["description"] = result.description
    else:
        body["result"] = result
    return json_response(body)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Compact UTF-8 JSON, the way Telegram writes it."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")
