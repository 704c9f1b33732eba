"""Fault injection: make the next N calls of a method fail the way Telegram can fail.

Kinds: ``server_error`` (a 5xx JSON answer: 500 `Internal Server Error`, 502 `Bad Gateway`,
503 `Service Unavailable`, 504 `Gateway Timeout`), ``retry_after`` (429 with the given
`retry_after`, not tied to any chat) and ``drop`` (the connection is closed without an
answer). A faulted call is not executed. Faults apply in the order they were added; `method`
is case-insensitive and ``*`` matches every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.sandbox.replies import ApiError, too_many_requests

KINDS = ("server_error", "retry_after", "drop")
SERVER_ERRORS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    """`remaining` more calls of `method` (of bot `bot_id`, or any) fail with `kind`."""

    method: str
    kind: str
    remaining: int
    status: int = 500
    retry_after: int = 1
    bot_id: int | None = None

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        """Validate a `POST /sandbox/faults` body; ValueError names the bad field."""
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        method, kind = body.get("method"), body.get("kind", "server_error")
        count = body.get("count", 1)
        if not isinstance(method, str) or not method:
            raise ValueError("'method' must be a Bot API method name or '*'")
        if kind not in KINDS:
            raise ValueError(f"'kind' must be one of {', '.join(KINDS)}")
        if not _positive_int(count):
            raise ValueError("'count' must be a positive integer")
        status = body.get("status", 500)
        if kind == "server_error" and status not in SERVER_ERRORS:
            codes = ", ".join(str(code) for code in SERVER_ERRORS)
            raise ValueError(f"'status' must be one of {codes}")
        retry_after = body.get("retry_after", 1)
        if not _positive_int(retry_after):
            raise ValueError("'retry_after' must be a positive integer (seconds)")
        bot_id = body.get("bot_id")
        if bot_id is not None and not _positive_int(bot_id):
            raise ValueError("'bot_id' must be a positive integer")
        return cls(method.lower(), kind, count, status, retry_after, bot_id)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the control API."""
        return {
            "method": self.method,
            "kind": self.kind,
            "remaining": self.remaining,
            "status": self.status if self.kind == "server_error" else None,
            "retry_after": self.retry_after if self.kind == "retry_after" else None,
            "bot_id": self.bot_id,
        }

    def error(self) -> ApiError | None:
        """The answer to give (None: drop the connection)."""
        if self.kind == "server_error":
            return ApiError(self.status, SERVER_ERRORS[self.status])
        if self.kind == "retry_after":
            return too_many_requests(self.retry_after)
        return None


class Faults:
    """The active faults, consumed call by call."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Arm a fault."""
        self._faults.append(fault)

    def clear(self) -> None:
        """Disarm every fault."""
        self._faults.clear()

    def take(self, method: str, bot_id: int) -> Fault | None:
        """Consume one use of the first fault matching this call, if any."""
        for fault in self._faults:
            if fault.method in (method, "*") and fault.bot_id in (None, bot_id):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def as_list(self) -> list[dict[str, Any]]:
        """The JSON shape of `GET /sandbox/faults`."""
        return [fault.as_dict() for fault in self._faults]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
