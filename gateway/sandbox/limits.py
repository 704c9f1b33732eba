"""Flood control: Telegram's send limits, enforced exactly and deterministically.

Counted calls: every send method (`sendMessage`, and any other `send*` except
`sendChatAction`) and `editMessageText`, Telegram's own rate-limited message operations. The
check runs after the call's parameters and the chat were validated, so a rejected call never
counts; a 429 does not count either.

Each bot has three kinds of sliding-window logs of the monotonic times of its *accepted*
counted calls:

- global: at most ``global_per_second`` calls in any window of 1.0 s;
- per chat: at most ``chat_per_second`` calls in any window of 1.0 s;
- per group (chat id < 0): at most ``group_per_minute`` calls in any window of 60.0 s.

A per-second rate ``r`` below 1 means one call per ``1 / r`` seconds; above 1 it is
``floor(r)`` calls per second. A call at time ``t`` is accepted iff, for every applicable
window of capacity ``c`` and length ``w``, fewer than ``c`` accepted calls have a time in
``(t - w, t]``. Otherwise it is answered 429 with ``retry_after = ceil(d)`` (at least 1), ``d``
being the longest wait over the violated windows until enough old calls leave them: with
``k >= c`` calls in the window, sorted oldest first, the one at index ``k - c`` must leave,
so ``d = times[k - c] + w - t``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

#: Methods besides send* that count against the limits.
COUNTED_METHODS = frozenset({"editmessagetext"})
UNCOUNTED_SENDS = frozenset({"sendchataction"})
GROUP_WINDOW_SECONDS = 60.0


def is_counted(method: str) -> bool:
    """Whether a (lower-case) method name counts against the flood limits."""
    return method in COUNTED_METHODS or (
        method.startswith("send") and method not in UNCOUNTED_SENDS
    )


@dataclass(frozen=True)
class FloodLimits:
    """The three configured limits; validated on creation."""

    global_per_second: float
    chat_per_second: float
    group_per_minute: int

    def __post_init__(self) -> None:
        for name in ("global_per_second", "chat_per_second", "group_per_minute"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number")
        if not isinstance(self.group_per_minute, int):
            raise ValueError("group_per_minute must be an integer")

    def as_dict(self) -> dict[str, float]:
        """The JSON shape of the control API."""
        return {
            "global_per_second": self.global_per_second,
            "chat_per_second": self.chat_per_second,
            "group_per_minute": self.group_per_minute,
        }


@dataclass(frozen=True)
class Window:
    """`capacity` calls per `seconds`."""

    capacity: int
    seconds: float

    @classmethod
    def per_second(cls, rate: float) -> Window:
        """The window for a per-second rate (see the module docstring)."""
        if rate >= 1:
            return cls(math.floor(rate), 1.0)
        return cls(1, 1.0 / rate)


@dataclass
class _Log:
    times: deque[float] = field(default_factory=deque)

    def prune(self, now: float, keep_seconds: float) -> None:
        while self.times and self.times[0] <= now - keep_seconds:
            self.times.popleft()

    def count_since(self, now: float, seconds: float) -> int:
        return sum(1 for t in self.times if t > now - seconds)

    def wait(self, now: float, window: Window) -> float:
        inside = [t for t in self.times if t > now - window.seconds]
        if len(inside) < window.capacity:
            return 0.0
        return inside[len(inside) - window.capacity] + window.seconds - now


@dataclass(frozen=True)
class Admission:
    """Counts right after an accepted call (itself included), for the statistics."""

    global_last_second: int
    chat_last_second: int
    group_last_minute: int | None


class FloodControl:
    """The sliding-window logs of every bot and chat."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._global: dict[int, _Log] = {}
        self._chats: dict[tuple[int, int], _Log] = {}

    def admit(
        self, bot_id: int, chat_id: int, now: float | None = None, messages: int = 1
    ) -> Admission | float:
        """Record an accepted call (as `messages` sends: an album), or return the seconds to
        wait (> 0) when over a limit."""
        now = time.monotonic() if now is None else now
        limits = self.limits
        global_window = Window.per_second(limits.global_per_second)
        chat_window = Window.per_second(limits.chat_per_second)
        group = chat_id < 0
        glog = self._global.setdefault(bot_id, _Log())
        clog = self._chats.setdefault((bot_id, chat_id), _Log())
        glog.prune(now, max(global_window.seconds, 1.0))
        keep = max(chat_window.seconds, GROUP_WINDOW_SECONDS if group else 1.0)
        clog.prune(now, keep)
        waits = [glog.wait(now, global_window), clog.wait(now, chat_window)]
        if group:
            waits.append(clog.wait(now, Window(limits.group_per_minute, GROUP_WINDOW_SECONDS)))
        delay = max(waits)
        if delay > 0:
            return delay
        glog.times.extend([now] * messages)
        clog.times.extend([now] * messages)
        return Admission(
            global_last_second=glog.count_since(now, 1.0),
            chat_last_second=clog.count_since(now, 1.0),
            group_last_minute=clog.count_since(now, GROUP_WINDOW_SECONDS) if group else None,
        )
