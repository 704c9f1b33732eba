"""Flood control: Telegram's send limits, enforced exactly and deterministically.

Counted calls: every send method (`sendMessage`, and any other `send*` except
`sendChatAction`) and `editMessageText`, Telegram's own rate-limited message operations. The
check runs after the call's parameters and the chat were validated, so a rejected call never
counts; a 429 does not count either.

Each bot has four kinds of sliding-window logs of the monotonic times of its *accepted*
counted calls:

- free (global): at most ``global_per_second`` calls *without* ``allow_paid_broadcast`` in any
  window of 1.0 s;
- paid broadcast (total): with ``paid_per_second`` > 0, at most ``paid_per_second`` calls in
  any window of 1.0 s, flagged or not. A flagged call is checked against this ceiling instead
  of the free limit (and is not counted in the free log); an unflagged one against both. With
  ``paid_per_second`` = 0 (paid broadcast not enabled for the bot) the flag changes nothing;
- per chat: at most ``chat_per_second`` calls in any window of 1.0 s;
- per group (chat id < 0): at most ``group_per_minute`` calls in any window of 60.0 s.

A per-second rate ``r`` below 1 means one call per ``1 / r`` seconds; above 1 it is
``floor(r)`` calls per second. A call at time ``t`` is accepted iff, for every applicable
window of capacity ``c`` and length ``w``, fewer than ``c`` accepted calls have a time in
``(t - w, t]``. Otherwise it is answered 429 with ``retry_after = ceil(d)`` (at least 1), ``d``
being the longest wait over the violated windows until enough old calls leave them: with
``k >= c`` calls in the window, sorted oldest first, the one at index ``k - c`` must leave,
so ``d = times[k - c] + w - t``. Calls arrive in time order, so each log is sorted and these
counts are binary searches, cheap at 1,000 calls/s.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.constants import TELEGRAM_PAID_PER_SECOND

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
    #: The paid-broadcast ceiling on all calls; 0: paid broadcast is not enabled.
    paid_per_second: float = TELEGRAM_PAID_PER_SECOND

    def __post_init__(self) -> None:
        for name in ("global_per_second", "chat_per_second", "group_per_minute"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number")
        if not isinstance(self.group_per_minute, int):
            raise ValueError("group_per_minute must be an integer")
        paid = self.paid_per_second
        if isinstance(paid, bool) or not isinstance(paid, int | float):
            raise ValueError("paid_per_second must be a number")
        if not (paid >= 0 and math.isfinite(paid)):
            raise ValueError("paid_per_second must be 0 (off) or a positive number")

    def as_dict(self) -> dict[str, float]:
        """The JSON shape of the control API."""
        return {
            "global_per_second": self.global_per_second,
            "chat_per_second": self.chat_per_second,
            "group_per_minute": self.group_per_minute,
            "paid_per_second": self.paid_per_second,
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
        return len(self.times) - bisect.bisect_right(self.times, now - seconds)

    def wait(self, now: float, window: Window) -> float:
        times = self.times
        if len(times) < window.capacity:
            return 0.0
        inside = len(times) - bisect.bisect_right(times, now - window.seconds)
        if inside < window.capacity:
            return 0.0
        return times[len(times) - window.capacity] + window.seconds - now


@dataclass(frozen=True)
class Admission:
    """Counts right after an accepted call (itself included), for the statistics."""

    global_last_second: int
    chat_last_second: int
    group_last_minute: int | None
    #: Calls without ``allow_paid_broadcast`` in the last second (the free limit's count).
    free_last_second: int = 0
    #: Whether the call was admitted as a paid broadcast (flagged, with paid broadcast on).
    paid: bool = False


class FloodControl:
    """The sliding-window logs of every bot and chat."""

    def __init__(self, limits: FloodLimits) -> None:
        self.limits = limits
        self._global: dict[int, _Log] = {}
        self._total: dict[int, _Log] = {}
        self._chats: dict[tuple[int, int], _Log] = {}

    def paid_enabled(self) -> bool:
        """Whether ``allow_paid_broadcast`` lifts the free limit (``paid_per_second`` > 0)."""
        return self.limits.paid_per_second > 0

    def admit(
        self,
        bot_id: int,
        chat_id: int,
        now: float | None = None,
        messages: int = 1,
        *,
        paid: bool = False,
    ) -> Admission | float:
        """Record an accepted call (as `messages` sends: an album; `paid` when it carries
        ``allow_paid_broadcast``), or return the seconds to wait (> 0) when over a limit."""
        now = time.monotonic() if now is None else now
        limits = self.limits
        paid = paid and self.paid_enabled()
        chat_window = Window.per_second(limits.chat_per_second)
        group = chat_id < 0
        glog = self._global.setdefault(bot_id, _Log())
        tlog = self._total.setdefault(bot_id, _Log())
        clog = self._chats.setdefault((bot_id, chat_id), _Log())
        global_window = Window.per_second(limits.global_per_second)
        glog.prune(now, max(global_window.seconds, 1.0))
        tlog.prune(now, 1.0 if not self.paid_enabled() else max(1.0, 1.0 / limits.paid_per_second))
        keep = max(chat_window.seconds, GROUP_WINDOW_SECONDS if group else 1.0)
        clog.prune(now, keep)
        waits = [clog.wait(now, chat_window)]
        if not paid:
            waits.append(glog.wait(now, global_window))
        if self.paid_enabled():
            waits.append(tlog.wait(now, Window.per_second(limits.paid_per_second)))
        if group:
            waits.append(clog.wait(now, Window(limits.group_per_minute, GROUP_WINDOW_SECONDS)))
        delay = max(waits)
        if delay > 0:
            return delay
        if not paid:
            glog.times.extend([now] * messages)
        tlog.times.extend([now] * messages)
        clog.times.extend([now] * messages)
        return Admission(
            global_last_second=tlog.count_since(now, 1.0),
            chat_last_second=clog.count_since(now, 1.0),
            group_last_minute=clog.count_since(now, GROUP_WINDOW_SECONDS) if group else None,
            free_last_second=glog.count_since(now, 1.0),
            paid=paid,
        )
