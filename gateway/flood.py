"""Flood control: never send faster than Telegram (or the sandbox) accepts.

Telegram throttles bots per bot (about 30 messages/s), per chat (about 1/s) and per group
(20/min), and answers 429 with ``retry_after`` beyond that. The sandbox enforces the same limits
with sliding windows on request arrival time, so this module mirrors them exactly: every limit is
a pair *(count, window)* meaning "at most ``count`` sends in any ``window`` seconds".

Two deliberate choices:

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

Everything here is synchronous and takes its time from an injected clock; the scheduler calls
:meth:`FloodController.try_acquire` for many chats per second, so the hot path creates no state
for chats that are not ready.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from gateway.constants import (
    TELEGRAM_CHAT_PER_SECOND,
    TELEGRAM_GLOBAL_PER_SECOND,
    TELEGRAM_GROUP_PER_MINUTE,
)

ChatId: TypeAlias = int | str
"""A Telegram ``chat_id``: a number, or ``"@username"`` of a public channel or supergroup."""

Clock: TypeAlias = Callable[[], float]

#: Float rounding when a caller sleeps exactly the returned delay can leave it a few ulps short
#: of the ready time; a nanosecond is far inside the safety margin and avoids a useless retry.
_EPSILON = 1e-9
_NUMERIC_CHAT_ID = re.compile(r"-?[0-9]+")


def _is_number(value: object) -> bool:
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

    def __post_init__(self) -> None:
        for name in ("global_per_second", "chat_per_second"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
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
        if not _is_number(margin) or not math.isfinite(margin) or margin < 0:
            raise ValueError(
                f"FloodLimits.margin_seconds must be a non-negative number, got {margin!r}"
            )

    @property
    def global_window(self) -> tuple[int, float]:
        """The per-bot limit as *(count, window seconds)*, without the margin."""
        return _rate_window(self.global_per_second, 1.0)

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


class SlidingWindow:
    """At most ``count`` events in any ``window + margin`` seconds.

    Only the ``count`` most recent event times are kept (older ones can never decide anything),
    so memory is bounded by ``count`` whatever the traffic.
    """

    __slots__ = ("_count", "_events", "_margin", "_span", "_window")

    def __init__(self, count: int, window: float, margin: float = 0.0) -> None:
        if count < 1 or window <= 0 or margin < 0:
            raise ValueError(
                f"SlidingWindow needs count >= 1, window > 0 and margin >= 0, "
                f"got count={count!r}, window={window!r}, margin={margin!r}"
            )
        self._count = count
        self._window = window
        self._margin = margin
        self._span = window + margin
        self._events: deque[float] = deque(maxlen=count)

    @property
    def count(self) -> int:
        """How many events fit in one window."""
        return self._count

    @property
    def window(self) -> float:
        """The window length in seconds, without the margin."""
        return self._window

    @property
    def span(self) -> float:
        """The window actually enforced: ``window + margin`` seconds."""
        return self._span

    @property
    def last(self) -> float | None:
        """The time of the most recent event, or None if there was none."""
        return self._events[-1] if self._events else None

    def ready_at(self, now: float) -> float:
        """The earliest time, not before ``now``, at which a new event keeps to the limit."""
        events = self._events
        if len(events) < self._count:
            return now
        # The deque holds exactly the last ``count`` events; a new one may follow once the oldest
        # of them has left the window.
        return max(now, events[0] + self._span)

    def record(self, now: float) -> None:
        """Record an event at ``now`` (not checked against the limit: ask :meth:`ready_at`)."""
        self._events.append(now)

    def move(self, old: float, new: float) -> None:
        """Re-date the event recorded at ``old`` to ``new`` (when the send was answered).

        Moving an event later only ever makes the window stricter. Events are kept in order.
        """
        events = self._events
        for index in range(len(events) - 1, -1, -1):
            if events[index] == old:
                del events[index]
                position = len(events)
                while position and events[position - 1] > new:
                    position -= 1
                events.insert(position, new)
                return

    def in_window(self, now: float) -> int:
        """How many recorded events fall within the last ``window + margin`` seconds."""
        start = now - self._span
        return sum(1 for t in self._events if t > start)

    def is_idle(self, now: float, idle_for: float = 0.0) -> bool:
        """True if no event happened in the last ``max(idle_for, window + margin)`` seconds.

        An idle window constrains nothing, so it can be dropped and rebuilt empty later.
        """
        last = self.last
        return last is None or last + max(idle_for, self._span) <= now

    def merge(self, times: Iterable[float]) -> None:
        """Take in events recorded elsewhere (in order with this window's own)."""
        merged = sorted([*self._events, *times])
        self._events.clear()
        self._events.extend(merged)  # maxlen keeps only the newest ``count``

    def reconfigured(self, count: int, window: float, margin: float) -> SlidingWindow:
        """A window with new limits that remembers the most recent events of this one."""
        new = SlidingWindow(count, window, margin)
        new._events.extend(self._events)  # maxlen keeps only the newest ``count``
        return new


@dataclass(frozen=True)
class FloodStats:
    """A snapshot of the controller, for metrics and the health endpoint."""

    tracked_chats: int
    paused_chats: int
    sends_in_window: int
    global_pause_remaining: float


class _ChatState:
    __slots__ = ("group", "paused_until", "window")

    def __init__(self, window: SlidingWindow, group: SlidingWindow | None) -> None:
        self.window = window
        self.group = group
        self.paused_until = -math.inf


class FloodController:
    """Decides when each send may go out so that no Telegram limit is exceeded.

    The scheduler asks :meth:`try_acquire` before every send; Telegram's 429 answers go to
    :meth:`pause_chat` or :meth:`pause_all`. State of chats idle for longer than their windows is
    dropped automatically, so memory follows the number of recently active chats, not of all
    chats ever seen.
    """

    def __init__(self, limits: FloodLimits | None = None, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._limits = limits if limits is not None else FloodLimits()
        count, window = self._limits.global_window
        self._global = SlidingWindow(count, window, self._limits.margin_seconds)
        self._global_paused_until = -math.inf
        self._chats: dict[ChatId, _ChatState] = {}
        self._longest_span = self._compute_longest_span()
        self._next_sweep = clock() + self._longest_span
        #: Clock time of the last slot `try_acquire` granted (for `settle`).
        self.last_acquired = -math.inf

    @property
    def limits(self) -> FloodLimits:
        """The limits in force."""
        return self._limits

    def ready_at(self, chat_id: ChatId) -> float:
        """The earliest clock time at which a send to ``chat_id`` keeps to every limit.

        Covers the per-bot window, the chat's window, the group's minute window and any pause.
        Never earlier than now.
        """
        key = _chat_key(chat_id)
        return self._ready_at(key, self._clock())

    def try_acquire(self, chat_id: ChatId) -> float:
        """Take a send slot for ``chat_id`` if one is free now.

        Returns 0.0 when the send may go out now (and counts it against every applicable limit),
        else the delay in seconds until it may (and counts nothing).
        """
        now = self._clock()
        key = _chat_key(chat_id)
        delay = self._ready_at(key, now) - now
        if delay > _EPSILON:
            return delay
        if now >= self._next_sweep:
            self._sweep(now, 0.0)
            self._next_sweep = now + self._longest_span
        state = self._chats.get(key)
        if state is None:
            state = self._chats[key] = self._new_state(key)
        self._global.record(now)
        state.window.record(now)
        if state.group is not None:
            state.group.record(now)
        self.last_acquired = now
        return 0.0

    def charge(self, chat_id: ChatId, extra: int, at: float) -> None:
        """Count `extra` more messages of a send whose slot was acquired at `at` (an album of
        N is N messages to Telegram): each takes the next free place of every window, so the
        sends after it wait as if N messages had gone out one after the other."""
        state = self._chats.get(_chat_key(chat_id))
        windows = [self._global]
        if state is not None:
            windows.append(state.window)
            if state.group is not None:
                windows.append(state.group)
        for window in windows:
            when = at
            for _ in range(extra):
                when = window.ready_at(when)
                window.record(when)

    def settle(self, chat_id: ChatId, acquired_at: float) -> None:
        """The send acquired at ``acquired_at`` was answered: count it from now on instead.

        The server counts a send when it *arrives*, somewhere between our acquiring the slot
        and its answer. Counting it at the answer can only overestimate the server's count, so
        no delay on the way in (a new connection, a busy event loop) can make us exceed a limit.
        """
        now = self._clock()
        self._global.move(acquired_at, now)
        state = self._chats.get(_chat_key(chat_id))
        if state is not None:
            state.window.move(acquired_at, now)
            if state.group is not None:
                state.group.move(acquired_at, now)

    def global_wait(self) -> float:
        """Seconds until the bot-wide limit (and any bot-wide pause) allows a send; 0 if now."""
        now = self._clock()
        return max(0.0, self._global.ready_at(now) - now, self._global_paused_until - now)

    def paused_for(self) -> float:
        """Seconds the bot-wide pause (Telegram's 429 for every chat) still holds; 0 if none."""
        return max(0.0, self._global_paused_until - self._clock())

    def pause_chat(self, chat_id: ChatId, seconds: float) -> None:
        """Hold every send to ``chat_id`` for ``seconds`` (Telegram's ``retry_after``).

        An existing longer pause is kept: a pause is only ever extended.
        """
        until = self._clock() + _pause_seconds(seconds)
        key = _chat_key(chat_id)
        state = self._chats.get(key)
        if state is None:
            state = self._chats[key] = self._new_state(key)
        state.paused_until = max(state.paused_until, until)

    def pause_all(self, seconds: float) -> None:
        """Hold every send for ``seconds``; an existing longer pause is kept."""
        self._global_paused_until = max(
            self._global_paused_until, self._clock() + _pause_seconds(seconds)
        )

    def update_limits(self, limits: FloodLimits) -> None:
        """Switch to new limits at run time, keeping the recent sends and the pauses."""
        self._limits = limits
        margin = limits.margin_seconds
        self._global = self._global.reconfigured(*limits.global_window, margin)
        chat_count, chat_window = limits.chat_window
        group_count, group_window = limits.group_window
        for state in self._chats.values():
            state.window = state.window.reconfigured(chat_count, chat_window, margin)
            if state.group is not None:
                state.group = state.group.reconfigured(group_count, group_window, margin)
        self._longest_span = self._compute_longest_span()
        self._next_sweep = min(self._next_sweep, self._clock() + self._longest_span)

    def recall(self, chat_id: ChatId, ages: Iterable[float]) -> None:
        """Count sends to ``chat_id`` made elsewhere ``ages`` seconds ago (a new leader takes
        in its predecessor's last minute), in the chat's and the group's windows.

        The bot-wide window is left alone: a new leader waits longer than it before sending.
        """
        now = self._clock()
        key = _chat_key(chat_id)
        state = self._chats.get(key)
        if state is None:
            state = self._chats[key] = self._new_state(key)
        times = [now - age for age in ages]
        state.window.merge(times)
        if state.group is not None:
            state.group.merge(times)

    def forget_idle(self, older_than: float = 0.0) -> int:
        """Drop the state of chats with no send for ``older_than`` seconds and no pause.

        A chat is never forgotten while one of its windows could still delay a send, whatever
        ``older_than`` says, so forgetting never lets a send through early. Returns how many
        chats were dropped. This also happens on its own, about once per longest window.
        """
        return self._sweep(self._clock(), older_than)

    def stats(self) -> FloodStats:
        """A snapshot for metrics; walks every tracked chat, so not for the hot path."""
        now = self._clock()
        paused = sum(1 for s in self._chats.values() if s.paused_until > now)
        return FloodStats(
            tracked_chats=len(self._chats),
            paused_chats=paused,
            sends_in_window=self._global.in_window(now),
            global_pause_remaining=max(0.0, self._global_paused_until - now),
        )

    def _ready_at(self, key: ChatId, now: float) -> float:
        ready = max(self._global.ready_at(now), self._global_paused_until)
        state = self._chats.get(key)
        if state is not None:
            ready = max(ready, state.window.ready_at(now), state.paused_until)
            if state.group is not None:
                ready = max(ready, state.group.ready_at(now))
        return ready

    def _new_state(self, key: ChatId) -> _ChatState:
        margin = self._limits.margin_seconds
        window = SlidingWindow(*self._limits.chat_window, margin)
        group = None
        if isinstance(key, int) and key < 0:
            group = SlidingWindow(*self._limits.group_window, margin)
        return _ChatState(window, group)

    def _sweep(self, now: float, older_than: float) -> int:
        stale = [
            key
            for key, state in self._chats.items()
            if state.paused_until <= now
            and state.window.is_idle(now, older_than)
            and (state.group is None or state.group.is_idle(now, older_than))
        ]
        for key in stale:
            del self._chats[key]
        return len(stale)

    def _compute_longest_span(self) -> float:
        margin = self._limits.margin_seconds
        return max(self._limits.chat_window[1], self._limits.group_window[1]) + margin


def _pause_seconds(seconds: float) -> float:
    if not _is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a pause must be a non-negative number of seconds, got {seconds!r}")
    return seconds


def _chat_key(chat_id: ChatId) -> ChatId:
    # Telegram accepts "-100123" and -100123 for the same chat; they must share one state.
    if isinstance(chat_id, str) and _NUMERIC_CHAT_ID.fullmatch(chat_id):
        return int(chat_id)
    return chat_id
