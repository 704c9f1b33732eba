"""A sliding-window limit: at most `count` events in any `window + margin` seconds.

The building block of the flood controller (`gateway.flood`): one per limit it keeps (the
bot-wide free and paid tiers, each chat, each group).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


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
