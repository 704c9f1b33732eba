"""Flood control: never send faster than Telegram (or the sandbox) accepts.

Telegram throttles bots per bot (about 30 messages/s), per chat (about 1/s) and per group
(20/min), and answers 429 with ``retry_after`` beyond that. The sandbox enforces the same limits
with sliding windows on request arrival time, so this module mirrors them exactly: every limit is
a pair *(count, window)* meaning "at most ``count`` sends in any ``window`` seconds".

A safety margin is added to every window and rates become whole counts conservatively; those
choices, and which limits apply to which chat id, are described in :mod:`gateway.floodlimits`.

Paid broadcast (Bot API 7.11, ``FloodLimits.paid_per_second``): the bot-wide limit gets a second
tier. The free tier (``global_per_second``, Telegram's ~30/s) is used first; only a send that
finds it full takes a slot of the paid tier, which caps *all* sends (free ones included) at
``paid_per_second``, and that send alone must carry ``allow_paid_broadcast`` (never pay for
what was free). The scheduler learns it from :meth:`FloodController.leaving`. When Telegram
says the bot's Stars ran out (:meth:`FloodController.paid_refused`), the paid tier is off for
``paid_fallback_seconds`` and every send waits for the free tier again.

When a send counts: the server counts it when the request *arrives*, after we acquired its slot
and before its answer. Once answered (:meth:`FloodController.settle`) a send is counted from
``max(acquired, answered - margin)``: never more than the margin earlier than its arrival,
which the margin (enforced on every window) makes up for, whatever the arrival was. So the
windows stay exact against the server's arrival times, and answers that take longer than the
margin (an upload, a busy event loop, a distant server) stretch a window only by their latency
beyond the margin, no longer by all of it.

Everything here is synchronous and takes its time from an injected clock; the scheduler calls
:meth:`FloodController.try_acquire` for many chats per second, so the hot path creates no state
for chats that are not ready.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from gateway.floodlimits import ChatId, FloodLimits, chat_key, is_number
from gateway.slidingwindow import SlidingWindow

__all__ = ["ChatId", "FloodController", "FloodLimits", "FloodStats", "SlidingWindow"]

Clock: TypeAlias = Callable[[], float]

#: Float rounding when a caller sleeps exactly the returned delay can leave it a few ulps short
#: of the ready time; a nanosecond is far inside the safety margin and avoids a useless retry.
_EPSILON = 1e-9


@dataclass(frozen=True)
class FloodStats:
    """A snapshot of the controller, for metrics and the health endpoint."""

    tracked_chats: int
    paused_chats: int
    sends_in_window: int
    global_pause_remaining: float
    #: True while sends above the free tier may be paid for (on, and not fallen back).
    paid_available: bool = False


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
        #: The paid tier's ceiling on every send (None: no paid tier); `_global` is the free tier.
        self._total = self._total_window(self._limits)
        #: acquired time → how many slots taken then are paid and have not left yet.
        self._paid_slots: dict[float, int] = {}
        self._paid_off_until = -math.inf
        #: Paid messages Telegram accepted, and the times it said the Stars ran out.
        self.paid_messages = 0
        self.paid_fallbacks = 0
        self._global_paused_until = -math.inf
        self._chats: dict[ChatId, _ChatState] = {}
        self._longest_span = self._compute_longest_span()
        self._next_sweep = clock() + self._longest_span
        #: Clock time of the last slot `try_acquire` granted (for `settle`).
        self.last_acquired = -math.inf
        #: Whether that slot is a paid one (its send must carry ``allow_paid_broadcast``).
        self.last_paid = False

    @property
    def limits(self) -> FloodLimits:
        """The limits in force."""
        return self._limits

    def ready_at(self, chat_id: ChatId) -> float:
        """The earliest clock time at which a send to ``chat_id`` keeps to every limit.

        Covers the per-bot window, the chat's window, the group's minute window and any pause.
        Never earlier than now.
        """
        key = chat_key(chat_id)
        return self._ready_at(key, self._clock())

    def try_acquire(self, chat_id: ChatId) -> float:
        """Take a send slot for ``chat_id`` if one is free now.

        Returns 0.0 when the send may go out now (and counts it against every applicable limit),
        else the delay in seconds until it may (and counts nothing).
        """
        now = self._clock()
        key = chat_key(chat_id)
        delay = self._ready_at(key, now) - now
        if delay > _EPSILON:
            return delay
        if now >= self._next_sweep:
            self._sweep(now, 0.0)
            self._next_sweep = now + self._longest_span
        state = self._chats.get(key)
        if state is None:
            state = self._chats[key] = self._new_state(key)
        # Free when the free tier has room; else (the ready time allowed it) a paid slot.
        paid = self._total is not None and self._global.ready_at(now) - now > _EPSILON
        if paid:
            self._paid_slots[now] = self._paid_slots.get(now, 0) + 1
        else:
            self._global.record(now)
        if self._total is not None:
            self._total.record(now)
        state.window.record(now)
        if state.group is not None:
            state.group.record(now)
        self.last_acquired = now
        self.last_paid = paid
        return 0.0

    def charge(self, chat_id: ChatId, extra: int, at: float) -> float:
        """Count `extra` more messages of a send whose slot was acquired at `at` (an album of
        N is N messages to Telegram): each takes the next free place of every window, so the
        sends after it wait as if N messages had gone out one after the other. A paid slot's
        album is paid as a whole: its messages stay out of the free tier. Returns the seconds
        until the last of their places in the bot-wide windows (0.0 if free now): the send
        waits that long, so its N messages together never exceed the bot's limits (sends
        picked in the same batch may have taken the places before it)."""
        state = self._chats.get(chat_key(chat_id))
        windows = [] if self._paid_slots.get(at) else [self._global]
        if self._total is not None:
            windows.append(self._total)
        if state is not None:
            windows.append(state.window)
            if state.group is not None:
                windows.append(state.group)
        latest = at
        for window in windows:
            when = at
            for _ in range(extra):
                when = window.ready_at(when)
                window.record(when)
            if window is self._global or window is self._total:
                latest = max(latest, when)
        return max(0.0, latest - self._clock())

    def leaving(self, acquired_at: float) -> bool:
        """The request of the slot acquired at ``acquired_at`` leaves now.

        Returns whether it must carry ``allow_paid_broadcast`` (a paid slot).
        """
        paid = self._paid_slots.get(acquired_at, 0)
        if not paid:
            return False
        if paid == 1:
            del self._paid_slots[acquired_at]
        else:
            self._paid_slots[acquired_at] = paid - 1
        return True

    def unpay(self, acquired_at: float) -> float:
        """Turn the paid slot acquired at ``acquired_at`` into a free one, for a call that
        cannot carry ``allow_paid_broadcast`` (an edit): 0.0 once done (the send then counts
        in the free tier from now), else the seconds until the free tier has room."""
        if not self._paid_slots.get(acquired_at):
            return 0.0
        now = self._clock()
        delay = self._global.ready_at(now) - now
        if delay > _EPSILON:
            return delay
        self._global.record(now)
        self.leaving(acquired_at)  # drops the paid mark
        return 0.0

    def paid_sent(self, messages: int) -> None:
        """Telegram accepted a paid send of ``messages`` messages (an album counts N)."""
        self.paid_messages += messages

    def paid_refused(self) -> bool:
        """Telegram said the bot's Stars balance is too low for a paid send: the paid tier is
        off for ``paid_fallback_seconds``. True when this starts a fallback (to log once)."""
        now = self._clock()
        starts = now >= self._paid_off_until
        if starts:
            self.paid_fallbacks += 1
        self._paid_off_until = now + self._limits.paid_fallback_seconds
        return starts

    @property
    def paid_available(self) -> bool:
        """True when sends above the free tier may be paid for: on, and not fallen back."""
        return self._limits.paid_per_second is not None and not self.paid_fallen_back

    @property
    def paid_fallen_back(self) -> bool:
        """True while the paid tier is off because Telegram said the Stars ran out."""
        return self._clock() < self._paid_off_until

    def settle(self, chat_id: ChatId, acquired_at: float) -> None:
        """The send acquired at ``acquired_at`` was answered: count it from
        ``max(acquired_at, now - margin)`` (see the module docstring).

        Never earlier than the slot was acquired, so settling only ever makes a window
        stricter than the acquisition did.
        """
        at = max(acquired_at, self._clock() - self._limits.margin_seconds)
        windows = [self._global] if self._total is None else [self._global, self._total]
        state = self._chats.get(chat_key(chat_id))
        if state is not None:
            windows.append(state.window)
            if state.group is not None:
                windows.append(state.group)
        for window in windows:
            window.move(acquired_at, at)

    def global_wait(self) -> float:
        """Seconds until the bot-wide limit (and any bot-wide pause) allows a send; 0 if now."""
        now = self._clock()
        return max(0.0, self._global_ready(now) - now, self._global_paused_until - now)

    def paused_for(self) -> float:
        """Seconds the bot-wide pause (Telegram's 429 for every chat) still holds; 0 if none."""
        return max(0.0, self._global_paused_until - self._clock())

    def pause_chat(self, chat_id: ChatId, seconds: float) -> None:
        """Hold every send to ``chat_id`` for ``seconds`` (Telegram's ``retry_after``).

        An existing longer pause is kept: a pause is only ever extended.
        """
        until = self._clock() + _pause_seconds(seconds)
        key = chat_key(chat_id)
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
        paid_window = limits.paid_window
        if paid_window is None:
            self._total = None
            self._paid_slots.clear()
        elif self._total is None:
            self._total = self._total_window(limits)
        else:
            self._total = self._total.reconfigured(*paid_window, margin)
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
        key = chat_key(chat_id)
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
            paid_available=self.paid_available,
        )

    def _global_ready(self, now: float) -> float:
        free = self._global.ready_at(now)
        if self._total is None:
            return free
        total = self._total.ready_at(now)
        return total if now >= self._paid_off_until else max(free, total)

    @staticmethod
    def _total_window(limits: FloodLimits) -> SlidingWindow | None:
        window = limits.paid_window
        return None if window is None else SlidingWindow(*window, limits.margin_seconds)

    def _ready_at(self, key: ChatId, now: float) -> float:
        ready = max(self._global_ready(now), self._global_paused_until)
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
        # Slots acquired but never sent (the lane emptied meanwhile) leave marks behind.
        horizon = now - self._longest_span
        for at in [at for at in self._paid_slots if at < horizon]:
            del self._paid_slots[at]
        return len(stale)

    def _compute_longest_span(self) -> float:
        margin = self._limits.margin_seconds
        return max(self._limits.chat_window[1], self._limits.group_window[1]) + margin


def _pause_seconds(seconds: float) -> float:
    if not is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a pause must be a non-negative number of seconds, got {seconds!r}")
    return seconds
