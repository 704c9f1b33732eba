"""Paid broadcast's Stars: each bot's balance, what its paid sends cost, and the refusals.

A send with ``allow_paid_broadcast`` (while paid broadcast is enabled, see
`gateway.sandbox.limits`) costs 0.1 Star per message (an album of N costs N x 0.1), taken from
the bot's balance when the send is accepted. Amounts are kept in tenths of a Star, so they stay
exact. When the balance cannot pay for a flagged send, the send is refused with 400
``Bad Request: BALANCE_TOO_LOW`` before the flood limits are looked at (so it counts nowhere):
the MTProto error Telegram gives for a Stars balance that is too low, passed on by the Bot API
server as it passes on other MTProto errors. Telegram does not document this answer for paid
broadcasts: it is a guess (docs/sandbox.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.constants import PAID_STAR_TENTHS_PER_MESSAGE

#: Large enough for any test or benchmark (a billion paid messages).
DEFAULT_BALANCE_TENTHS = 1_000_000_000
BALANCE_TOO_LOW = "BALANCE_TOO_LOW"
#: How many recent counted sends a bot keeps for the control API.
RECENT_SENDS = 1000


@dataclass
class StarAccount:
    """One bot's Stars and its recent counted sends (for the control API)."""

    balance_tenths: int = DEFAULT_BALANCE_TENTHS
    paid_messages: int = 0
    refused: int = 0
    #: (chat_id, messages, paid) of the most recent accepted counted sends, oldest first.
    recent: deque[tuple[int, int, bool]] = field(default_factory=lambda: deque(maxlen=RECENT_SENDS))

    def can_pay(self, messages: int) -> bool:
        """Whether the balance pays for a paid send of `messages` messages."""
        return self.balance_tenths >= messages * PAID_STAR_TENTHS_PER_MESSAGE

    def charge(self, messages: int) -> None:
        """Take the price of an accepted paid send."""
        self.balance_tenths -= messages * PAID_STAR_TENTHS_PER_MESSAGE
        self.paid_messages += messages

    def record(self, chat_id: int, messages: int, paid: bool) -> None:
        """An accepted counted send (paid or not)."""
        self.recent.append((chat_id, messages, paid))

    def as_dict(self, bot_id: int) -> dict[str, Any]:
        """The JSON shape of `GET /sandbox/stars`."""
        return {
            "bot_id": bot_id,
            "balance": self.balance_tenths / 10,
            "paid_messages": self.paid_messages,
            "stars_spent": self.paid_messages * PAID_STAR_TENTHS_PER_MESSAGE / 10,
            "refused": self.refused,
            "recent_sends": [
                {"chat_id": chat_id, "messages": messages, "paid": paid}
                for chat_id, messages, paid in self.recent
            ],
        }


def stars_to_tenths(value: object) -> int:
    """A balance given in Stars (a number with at most one decimal) as tenths of a Star."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("'balance' must be a number of Stars")
    tenths = round(value * 10)
    if tenths < 0 or abs(tenths - value * 10) > 1e-6:
        raise ValueError("'balance' must be a non-negative number of Stars in steps of 0.1")
    return tenths
