"""What the sandbox observed: calls, answers, 429s and the peak send rates.

The peaks are exact: after each accepted counted call (see `gateway.sandbox.limits`) the
number of accepted calls in the 1 s (or 60 s) window ending at that call is compared with the
maximum so far; a window's maximum is always reached at one of its calls.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.limits import Admission


@dataclass
class Stats:
    """Counters since start or since the last reset."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    flood_429: int = 0
    fault_answers: int = 0
    total_sends: int = 0
    max_global_per_second: int = 0
    max_chat_per_second: int = 0
    max_group_per_minute: int = 0
    #: Peak of sends without allow_paid_broadcast in 1 s (the free limit's count).
    max_free_per_second: int = 0
    #: Messages accepted as paid broadcasts (an album of N counts N).
    paid_sends: int = 0
    webhook_deliveries: int = 0
    webhook_failures: int = 0

    def record_call(self, method: str) -> None:
        """A Bot API call arrived (with its canonical method name)."""
        self.calls[method] += 1

    def record_status(self, status: int) -> None:
        """A Bot API call was answered with `status`."""
        self.statuses[status] += 1

    def record_send(self, admission: Admission, messages: int = 1) -> None:
        """A counted call (of `messages` messages) was accepted."""
        self.total_sends += 1
        self.max_free_per_second = max(self.max_free_per_second, admission.free_last_second)
        if admission.paid:
            self.paid_sends += messages
        self.max_global_per_second = max(self.max_global_per_second, admission.global_last_second)
        self.max_chat_per_second = max(self.max_chat_per_second, admission.chat_last_second)
        if admission.group_last_minute is not None:
            self.max_group_per_minute = max(self.max_group_per_minute, admission.group_last_minute)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of `GET /sandbox/stats`."""
        return {
            "calls": dict(sorted(self.calls.items())),
            "responses": {str(code): n for code, n in sorted(self.statuses.items())},
            "too_many_requests": self.statuses.get(429, 0),
            "flood_429": self.flood_429,
            "fault_answers": self.fault_answers,
            "total_sends": self.total_sends,
            "max_global_per_second": self.max_global_per_second,
            "max_chat_per_second": self.max_chat_per_second,
            "max_group_per_minute": self.max_group_per_minute,
            "max_free_per_second": self.max_free_per_second,
            "paid_sends": self.paid_sends,
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_failures": self.webhook_failures,
        }
