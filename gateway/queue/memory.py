"""An in-memory queue: for tests and throwaway runs (everything is lost on exit)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from gateway import constants as c
from gateway.commands import Command, Status
from gateway.queue.base import FailedUpdate, Queue, UpdateRecord
from gateway.queue.threads import CLOSED_THREAD_KEEP_SECONDS, Thread, is_show


class MemoryQueue(Queue):
    """Commands in a dict, lanes as deques of ids."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._lanes: dict[str, deque[str]] = {}
        #: key → ids accepted with it, oldest first.
        self._idempotency: dict[str, list[str]] = {}
        self._seq = itertools.count(1)
        #: (bot, update id) → (digest, received at) of handled webhook updates.
        self._updates: dict[tuple[int, int], tuple[str, float]] = {}
        self._failed: deque[FailedUpdate] = deque(maxlen=c.FAILED_UPDATES_KEPT)
        #: (client, signature) → when it expires; swept at most once a second.
        self._signatures: dict[tuple[str, str], float] = {}
        self._swept = 0.0
        self._threads: dict[str, Thread] = {}

    async def put(self, commands: Sequence[Command]) -> None:
        for command in commands:
            command.seq = next(self._seq)
            # A deep copy, as a database would store: the caller's objects stay theirs.
            self._commands[command.id] = deepcopy(command)
            self._lanes.setdefault(command.lane, deque()).append(command.id)
            if command.idempotency_key:
                self._idempotency.setdefault(command.idempotency_key, []).append(command.id)

    async def get(self, command_id: str) -> Command | None:
        command = self._commands.get(command_id)
        return deepcopy(command) if command else None

    async def find_idempotent(self, key: str, since: float) -> Command | None:
        for command_id in self._idempotency.get(key, ()):
            command = self._commands[command_id]
            if command.created_at >= since:
                return deepcopy(command)
        return None

    async def lanes(self) -> dict[str, float]:
        return {
            chat: self._commands[ids[0]].not_before
            for chat, ids in self._lanes.items()
            if ids and self._commands[ids[0]].status is Status.QUEUED
        }

    async def head_due(self, chat: str) -> float | None:
        ids = self._lanes.get(chat)
        if not ids:
            return None
        head = self._commands[ids[0]]
        return head.not_before if head.status is Status.QUEUED else None

    async def claim(self, chat: str, now: float) -> Command | None:
        ids = self._lanes.get(chat)
        if not ids:
            return None
        head = self._commands[ids[0]]
        if head.status is not Status.QUEUED or head.not_before > now:
            return None
        head.status, head.attempts, head.updated_at = Status.SENDING, head.attempts + 1, now
        return deepcopy(head)

    async def complete(
        self, command_id: str, result: Any, now: float, status: Status = Status.SENT
    ) -> None:
        self._finish(command_id, status, now, result=result)

    async def awaiting(self) -> list[Command]:
        return [
            deepcopy(command)
            for command in self._commands.values()
            if command.status is Status.AWAITING_REPLY
        ]

    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        command = self._commands[command_id]
        if command.status is not Status.AWAITING_REPLY:
            return False
        command.status, command.updated_at = status, now
        command.meta = {**command.meta, "reply": deepcopy(reply)}
        return True

    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        self._finish(command_id, Status.FAILED, now, error=error)

    async def retry(
        self,
        command_id: str,
        not_before: float,
        now: float,
        error: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        command = self._commands[command_id]
        if command.status.final:
            return
        command.status, command.not_before, command.updated_at = Status.QUEUED, not_before, now
        command.error = error
        if refund:
            command.attempts -= 1
        if params is not None:
            command.params = deepcopy(params)

    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        command = self._commands[command_id]
        parts = list(command.result) if isinstance(command.result, list) else []
        parts[part:] = [deepcopy(result)]
        command.result = parts

    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        if now - self._swept >= 1.0:
            self._signatures = {k: t for k, t in self._signatures.items() if t >= now}
            self._swept = now
        key = (client, signature)
        if self._signatures.get(key, -1.0) >= now:
            return False
        self._signatures[key] = expires
        return True

    async def recover(self) -> int:
        count = 0
        for command in self._commands.values():
            if command.status is Status.SENDING:
                command.status = Status.QUEUED
                count += 1
        return count

    async def prune(self, before: float, limit: int) -> int:
        keyed_before = min(before, time.time() - c.IDEMPOTENCY_WINDOW_SECONDS)
        doomed: list[Command] = []
        # Insertion order is acceptance order, so the oldest come first; a command accepted
        # after `before` was not updated before it either (the few accepted out of order are
        # left for the next call).
        for command in self._commands.values():
            if len(doomed) >= limit or command.created_at >= before:
                break
            if not command.status.final or command.updated_at >= before:
                continue
            if command.idempotency_key and command.created_at >= keyed_before:
                continue
            doomed.append(command)
        for command in doomed:
            del self._commands[command.id]
            key = command.idempotency_key
            if key:
                ids = self._idempotency[key]
                ids.remove(command.id)
                if not ids:
                    del self._idempotency[key]
        return len(doomed)

    async def depth(self) -> int:
        return sum(len(ids) for ids in self._lanes.values())

    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        seen = self._updates.get((bot_id, update_id))
        return seen is not None and seen[0] == digest

    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        if await self.update_seen(record.bot_id, record.update_id, record.digest):
            return False
        # Kept in the order received (a replaced key moves to the end): prune from the front.
        while self._updates:
            oldest, (_, received_at) = next(iter(self._updates.items()))
            if received_at >= forget_before:
                break
            del self._updates[oldest]
        key = (record.bot_id, record.update_id)
        self._updates.pop(key, None)
        self._updates[key] = (record.digest, record.received_at)
        if record.failure is not None:
            self._failed.append(record.failure)
        await self.put(commands)
        return True

    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        return list(reversed(self._failed))[:limit]

    async def held_lanes(self, waiting_since: float) -> int:
        heads = (self._commands[ids[0]] for ids in self._lanes.values() if ids)
        return sum(1 for h in heads if h.created_at < waiting_since or h.error is not None)

    async def open_thread(self, inlet: str, chat: str, key: str) -> Thread | None:
        for thread in self._threads.values():
            if (thread.inlet, thread.chat, thread.key, thread.closed) == (inlet, chat, key, False):
                return deepcopy(thread)
        return None

    async def thread(self, thread_id: str) -> Thread | None:
        found = self._threads.get(thread_id)
        return deepcopy(found) if found else None

    async def save_thread(
        self, thread: Thread, expected: int, commands: Sequence[Command]
    ) -> list[Command] | None:
        stored = self._threads.get(thread.id)
        if (stored.version if stored else 0) != expected:
            return None
        if stored is None and await self.open_thread(thread.inlet, thread.chat, thread.key):
            return None
        pending = stored.pending if stored else None
        if stored is not None:
            thread.message_id, thread.digest = stored.message_id, stored.digest
            thread.shown = max(thread.shown, stored.shown)
        head = self._commands.get(pending) if pending else None
        waiting = head is not None and head.status is Status.QUEUED
        kept = [command for command in commands if not (is_show(command) and waiting)]
        for command in kept:
            if is_show(command):
                pending = command.id
        thread.pending = pending
        self._threads[thread.id] = deepcopy(thread)
        if thread.closed:
            horizon = thread.updated_at - CLOSED_THREAD_KEEP_SECONDS
            for old in [t for t in self._threads.values() if t.closed and t.updated_at < horizon]:
                del self._threads[old.id]
        await self.put(kept)
        return kept

    async def thread_shown(
        self, thread_id: str, version: int, message_id: int | None, digest: str
    ) -> None:
        thread = self._threads.get(thread_id)
        if thread is not None:
            if version >= thread.shown:
                thread.digest = digest
            thread.shown = max(thread.shown, version)
            if thread.message_id is None:
                thread.message_id = message_id

    async def thread_message_gone(self, thread_id: str, message_id: int) -> None:
        thread = self._threads.get(thread_id)
        if thread is not None and thread.message_id == message_id:
            thread.message_id, thread.digest = None, None

    def _finish(self, command_id: str, status: Status, now: float, **fields: Any) -> None:
        command = self._commands[command_id]
        command.status, command.updated_at = status, now
        for name, value in fields.items():
            setattr(command, name, deepcopy(value))
        lane = self._lanes.get(command.lane)
        if lane and command_id in lane:
            lane.remove(command_id)
            self._drop_empty(command.lane)

    def _drop_empty(self, chat: str) -> None:
        if not self._lanes.get(chat):
            self._lanes.pop(chat, None)
