"""Telegram's send limits as the gateway keeps them, and which of them apply to a chat.

Every limit is a pair *(count, window)* meaning "at most ``count`` sends in any ``window``
seconds"; :mod:`gateway.flood` keeps to them. Two deliberate choices:

* **A safety margin.** A send leaves the gateway a little before it reaches the server, and
  loopback or event-loop jitter of a few milliseconds can compress the gaps between arrivals. So
  the gateway enforces "at most ``count`` in any ``window + margin`` seconds"; the default
  margin of 0.02 s costs about 2 % of the throughput (30 / 1.02 = 29.4 sends/s).
* **Rates become whole counts conservatively.** A rate ``r`` per window ``W`` becomes
  ``(floor(r * W), W)`` when at least one send fits in ``W``, else ``(1, 1 / r)``. Rounding down
  is the only safe choice against a server that checks every 1-second window: 1.5/s becomes
  1 per second (a pair like (3, 2 s) would allow a burst of 3 inside one second), and 0.5/s
  becomes one send per 2 s.

Chat ids: a negative integer (or a string holding one, as Telegram also accepts) is a group and
also gets the per-minute limit; positive ids are private chats. A ``"@username"`` names a public
channel or supergroup whose kind cannot be told from the name, so it gets only the per-chat
limit, under its own state (separate from the chat's numeric id); address a supergroup by its
numeric id to keep it to the per-minute limit as well.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TypeAlias

from gateway.constants import (
    PAID_FALLBACK_SECONDS,
    TELEGRAM_CHAT_PER_SECOND,
    TELEGRAM_GLOBAL_PER_SECOND,
    TELEGRAM_GROUP_PER_MINUTE,
)

ChatId: TypeAlias = int | str
"""A Telegram ``chat_id``: a number, or ``"@username"`` of a public channel or supergroup."""

_NUMERIC_CHAT_ID = re.compile(r"-?[0-9]+")


def is_number(value: object) -> bool:
    """A real number: an int or a float, not a bool."""
    # bool is an int, but ``True`` as a rate is always a mistake.
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class FloodLimits:
    """The limits the gateway keeps to, and the safety margin it adds to every window.

    Rates may be fractional (``chat_per_second=0.5`` means one send per 2 seconds); see the
    module docstring for how they become whole counts.
    """

    global_per_second: float = TELEGRAM_GLOBAL_PER_SECOND
    chat_per_second: float = TELEGRAM_CHAT_PER_SECOND
    group_per_minute: int = TELEGRAM_GROUP_PER_MINUTE
    margin_seconds: float = 0.02
    #: The paid-broadcast ceiling on all sends, free ones included; None: no paid tier.
    paid_per_second: float | None = None
    #: How long the paid tier stays off after Telegram said the Stars ran out.
    paid_fallback_seconds: float = PAID_FALLBACK_SECONDS

    def __post_init__(self) -> None:
        for name in ("global_per_second", "chat_per_second"):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"FloodLimits.{name} must be a positive number, got {value!r}")
        if not isinstance(self.group_per_minute, int) or isinstance(self.group_per_minute, bool):
            raise ValueError(
                f"FloodLimits.group_per_minute must be a positive integer, "
                f"got {self.group_per_minute!r}"
            )
        if self.group_per_minute <= 0:
            raise ValueError(
                f"FloodLimits.group_per_minute must be a positive integer, "
                f"got {self.group_per_minute!r}"
            )
        margin = self.margin_seconds
        if not is_number(margin) or not math.isfinite(margin) or margin < 0:
            raise ValueError(
                f"FloodLimits.margin_seconds must be a non-negative number, got {margin!r}"
            )
        paid = self.paid_per_second
        if paid is not None and (
            not is_number(paid) or not math.isfinite(paid) or paid <= self.global_per_second
        ):
            raise ValueError(
                f"FloodLimits.paid_per_second must be a number above global_per_second "
                f"({self.global_per_second!r}), got {paid!r}"
            )
        fallback = self.paid_fallback_seconds
        if not is_number(fallback) or not math.isfinite(fallback) or fallback < 0:
            raise ValueError(
                f"FloodLimits.paid_fallback_seconds must be a non-negative number, got {fallback!r}"
            )

    @property
    def global_window(self) -> tuple[int, float]:
        """The per-bot limit as *(count, window seconds)*, without the margin."""
        return _rate_window(self.global_per_second, 1.0)

    @property
    def paid_window(self) -> tuple[int, float] | None:
        """The paid-broadcast ceiling as *(count, window seconds)*; None without a paid tier."""
        return None if self.paid_per_second is None else _rate_window(self.paid_per_second, 1.0)

    @property
    def chat_window(self) -> tuple[int, float]:
        """The per-chat limit as *(count, window seconds)*, without the margin."""
        return _rate_window(self.chat_per_second, 1.0)

    @property
    def group_window(self) -> tuple[int, float]:
        """The per-group limit as *(count, window seconds)*, without the margin."""
        return (self.group_per_minute, 60.0)


def _rate_window(rate: float, window: float) -> tuple[int, float]:
    count = math.floor(rate * window)
    if count >= 1:
        return (count, window)
    return (1, 1.0 / rate)


def chat_key(chat_id: ChatId) -> ChatId:
    """The key of a chat's flood state: a numeric string becomes its number."""
    # Telegram accepts "-100123" and -100123 for the same chat; they must share one state.
    if isinstance(chat_id, str) and _NUMERIC_CHAT_ID.fullmatch(chat_id):
        return int(chat_id)
    return chat_id
