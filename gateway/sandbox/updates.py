"""One bot's update queue: what getUpdates returns and what the webhook delivery sends.

Updates are numbered per bot. They wait here until confirmed (getUpdates with a higher offset)
or delivered (a 2xx from the webhook), and are dropped after `update_ttl_seconds` (24 h), like
Telegram's. Updates of one chat form one ordered lane: only the oldest pending update of a
chat may be in flight, so one chat's updates reach the webhook strictly in order while other
chats proceed in parallel. An update of a type outside the bot's `allowed_updates` is never
queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
#: Sent only to bots that ask for them explicitly.
OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
DEFAULT_ALLOWED = frozenset(ALL_UPDATE_TYPES) - OPT_IN_UPDATE_TYPES


def read_allowed_updates(value: Any) -> frozenset[str]:
    """`allowed_updates` as Telegram reads it: unknown names ignored, none left = default."""
    names = [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
    allowed = frozenset(name for name in names if name in ALL_UPDATE_TYPES)
    return allowed or DEFAULT_ALLOWED


class Notifier:
    """Wakes every waiter; a generation number closes the check-then-wait race."""

    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """Wake everybody waiting now."""
        self.generation += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, since: int, timeout: float | None) -> None:
        """Return after a `notify` newer than generation `since`, or after `timeout` s."""
        if self.generation != since:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await waiter
        finally:
            self._waiters.discard(waiter)


@dataclass
class PendingUpdate:
    """An update waiting for delivery, with its retry state."""

    update_id: int
    kind: str
    payload: dict[str, Any]
    lane: int
    created_at: float
    attempts: int = 0
    wakeup_at: float = 0.0
    in_flight: bool = False
    last_error: str | None = None

    def body(self) -> dict[str, Any]:
        """The Update object as sent to the bot."""
        return {"update_id": self.update_id, self.kind: self.payload}

    def summary(self) -> dict[str, Any]:
        """What the control API shows of it."""
        return {
            "update_id": self.update_id,
            "type": self.kind,
            "chat_id": self.lane,
            "created_at": int(self.created_at),
            "attempts": self.attempts,
            "last_error": self.last_error,
            "update": self.body(),
        }


@dataclass
class UpdateQueue:
    """Pending updates of one bot plus a bounded history of delivered ones."""

    ttl_seconds: float
    history_size: int
    next_id: int = 1
    allowed: frozenset[str] = DEFAULT_ALLOWED
    pending: dict[int, PendingUpdate] = field(default_factory=dict)
    changed: Notifier = field(default_factory=Notifier)
    history: deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)

    def push(self, kind: str, payload: dict[str, Any], lane: int) -> PendingUpdate | None:
        """Queue an update (None when `allowed_updates` excludes its type)."""
        if kind not in self.allowed:
            return None
        update = PendingUpdate(self.next_id, kind, payload, lane, time.time())
        self.next_id += 1
        self.pending[update.update_id] = update
        self.changed.notify()
        return update

    def expire(self, now: float | None = None) -> None:
        """Drop updates older than the time to live."""
        limit = (time.time() if now is None else now) - self.ttl_seconds
        for update_id in [u.update_id for u in self.pending.values() if u.created_at < limit]:
            self.forget(update_id)

    def forget(self, update_id: int, *, delivered: bool = False) -> None:
        """Remove an update, recording it in the history when it was delivered."""
        update = self.pending.pop(update_id, None)
        if update is not None and delivered:
            record = update.summary()
            record["delivered_at"] = int(time.time())
            self.history.append(record)
        self.changed.notify()

    def drop_all(self) -> None:
        """drop_pending_updates: forget every pending update."""
        self.pending.clear()
        self.changed.notify()

    def poll(self, offset: int, limit: int) -> list[PendingUpdate]:
        """getUpdates: confirm what `offset` confirms, return up to `limit` updates."""
        self.expire()
        ids = sorted(self.pending)
        if offset < 0:
            keep = set(ids[offset:])
            for update_id in ids:
                if update_id not in keep:
                    self.pending.pop(update_id)
        elif offset > 0:
            for update_id in ids:
                if update_id < offset:
                    self.forget(update_id, delivered=True)
        return [self.pending[i] for i in sorted(self.pending)][:limit]

    def ready(self, now: float, limit: int) -> list[PendingUpdate]:
        """Heads of lanes that are due and not in flight, oldest first, at most `limit`."""
        seen: set[int] = set()
        result: list[PendingUpdate] = []
        for update in self._ordered():
            if update.lane in seen:
                continue
            seen.add(update.lane)
            if not update.in_flight and update.wakeup_at <= now and len(result) < limit:
                result.append(update)
        return result

    def next_wakeup(self, now: float) -> float | None:
        """The earliest future retry time among lane heads waiting for one."""
        heads: dict[int, PendingUpdate] = {}
        for update in self._ordered():
            heads.setdefault(update.lane, update)
        times = [u.wakeup_at for u in heads.values() if not u.in_flight and u.wakeup_at > now]
        return min(times) if times else None

    def _ordered(self) -> Iterable[PendingUpdate]:
        return (self.pending[i] for i in sorted(self.pending))
