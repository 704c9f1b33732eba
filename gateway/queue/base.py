"""The queue contract every backend honours.

The queue is the source of truth for commands. It keeps one lane per chat: within a lane,
commands are delivered in the order they were accepted, and a lane whose oldest command is
waiting (backoff, flood pause) holds the ones behind it. The scheduler (`gateway.delivery`)
decides *which* lane goes next; the queue only answers for order and state.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.commands import Command, Status
from gateway.queue.threads import Thread


@dataclass(frozen=True)
class Completed:
    """A delivery recorded by `complete_and_peek`: its lane's next due time, and when the
    record is durable."""

    #: When the lane's oldest unfinished command is due (None: empty, or it is `sending`).
    next_due: float | None
    #: Answers once the record is on disk; raises `QueueSyncError` if that is not confirmed.
    durable: asyncio.Future[None]


@dataclass(frozen=True)
class FailedUpdate:
    """A dead letter: a webhook update aiogram could not validate, acknowledged all the same."""

    bot_id: int
    update_id: int
    received_at: float
    #: The first field that failed validation, and why (no values from the update).
    error: str
    #: What the gateway still did with it (the sender, chat and command it could read).
    handled: str
    #: The update as received, JSON text.
    body: str


@dataclass(frozen=True)
class UpdateRecord:
    """A webhook update the gateway handled: its dedup key, and its dead letter if it has one."""

    bot_id: int
    update_id: int
    #: The update's content hash: the same id with another content is a new update.
    digest: str
    received_at: float
    failure: FailedUpdate | None = None


class Queue(ABC):
    """Storage of commands across their lifecycle."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare storage (create tables, ...)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release storage."""

    async def migrated_chats(self) -> dict[str, int]:
        """Chats Telegram moved to a supergroup, lane → new chat id, as `save_migrated_chat`
        kept them; a backend that keeps none (memory, sqlite) has none after a restart."""
        return {}

    async def save_migrated_chat(self, lane: str, chat_id: int) -> None:  # noqa: B027
        """Remember that the chat of `lane` is now `chat_id` (optional: the worker also keeps
        it in memory)."""

    @abstractmethod
    async def put(self, commands: Sequence[Command]) -> None:
        """Store new commands atomically; they are safe once this returns.

        Each command's `seq` is set to its place in acceptance order. The queue keeps its own
        copy: changing a command after `put` does not change what is stored.
        """

    @abstractmethod
    async def get(self, command_id: str) -> Command | None:
        """A copy of a command by id, whatever its status (changing it changes nothing)."""

    @abstractmethod
    async def find_idempotent(self, key: str, since: float) -> Command | None:
        """The first command accepted with this idempotency key at or after `since`, if any.

        A request split into several commands gives them all its key; the first is the one
        its answer named.
        """

    @abstractmethod
    async def lanes(self) -> dict[str, float]:
        """Every lane whose oldest unfinished command is queued, mapped to when it is due.

        A lane whose oldest command is `sending` is left out: one command in flight per lane.
        """

    @abstractmethod
    async def head_due(self, chat: str) -> float | None:
        """When the lane's oldest unfinished command is due; None when the lane is empty or
        that command is `sending`."""

    @abstractmethod
    async def claim(self, chat: str, now: float) -> Command | None:
        """Take the lane's oldest queued command if due: it becomes `sending`, attempts + 1."""

    @abstractmethod
    async def complete(
        self, command_id: str, result: Any, now: float, status: Status = Status.SENT
    ) -> None:
        """The command was delivered: `sent` (or `awaiting_reply` for a question), with
        Telegram's result; either way it leaves its lane."""

    async def complete_and_peek(
        self, command_id: str, result: Any, now: float, status: Status, lane: str
    ) -> Completed:
        """`complete`, then `head_due(lane)`, returning as soon as the record is committed.

        A backend whose later writes reach the disk only after this one (SQLite's log) may
        answer before the record itself is synced: the next claim is synced before its send
        and that sync covers this record too. `Completed.durable` says when it is on disk.
        This default is durable on return (each write is).
        """
        await self.complete(command_id, result, now, status)
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        durable.set_result(None)
        return Completed(await self.head_due(lane), durable)

    @abstractmethod
    async def fail(self, command_id: str, error: dict[str, Any], now: float) -> None:
        """The command will never be delivered: `failed`, with the reason."""

    @abstractmethod
    async def retry(
        self,
        command_id: str,
        not_before: float,
        now: float,
        error: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        refund: bool = False,
    ) -> None:
        """Back to `queued` until `not_before`, keeping its place at the head of its lane.

        `params` replaces the call's parameters (a migrated chat id); `refund` gives the attempt
        back (a flood-control pause is not the command's fault). A command already `sent` or
        `failed` stays as it is: final is final, so a late retry cannot send it twice.
        """

    @abstractmethod
    async def save_part(self, command_id: str, part: int, result: Any, now: float) -> None:
        """Record that part `part` (from 0) of a split message was delivered with `result`.

        The status is unchanged and the command itself is not rewritten (it holds the whole
        text). Until the command completes, its `result` reads as the list of the parts saved
        so far, in order; `complete` then stores the final result in their place.
        """

    @abstractmethod
    async def awaiting(self) -> list[Command]:
        """Every command in `awaiting_reply` (questions not answered yet)."""

    @abstractmethod
    async def settle_question(
        self, command_id: str, status: Status, reply: dict[str, Any], now: float
    ) -> bool:
        """`awaiting_reply` → `status` (answered or expired) with `reply` kept in meta.

        Only the first settlement wins (a tap racing the expiry): False when the command was
        not awaiting a reply any more.
        """

    @abstractmethod
    async def remember_signature(
        self, client: str, signature: str, expires: float, now: float
    ) -> bool:
        """Record `client`'s request `signature` as used until `expires`; False when it is
        recorded already (a replay). Signatures that expired by `now` are forgotten."""

    @abstractmethod
    async def recover(self) -> int:
        """At start-up: put every `sending` command back to `queued`; how many there were."""

    @abstractmethod
    async def prune(self, before: float, limit: int) -> int:
        """Delete up to `limit` final commands (sent, failed, answered, expired) last updated
        before `before`, with their parts; how many were deleted.

        A command that carries an idempotency key is kept until its window
        (`constants.IDEMPOTENCY_WINDOW_SECONDS` after acceptance) has passed, whatever
        `before` says. Questions awaiting a reply are not final and are never pruned.
        """

    def storage_bytes(self) -> int | None:
        """Bytes the queue occupies on disk (database and its log); None when it has no file."""
        return None

    @abstractmethod
    async def depth(self) -> int:
        """How many commands are not final (queued or sending)."""

    @abstractmethod
    async def update_seen(self, bot_id: int, update_id: int, digest: str) -> bool:
        """Whether this update (same bot, id and content) was recorded by `record_update`."""

    @abstractmethod
    async def record_update(
        self, record: UpdateRecord, commands: Sequence[Command], forget_before: float
    ) -> bool:
        """Store, atomically, that an update was handled, its dead letter if any, and the
        commands its handling produced (numbered as `put` numbers them).

        False, storing nothing, when the same update (id and digest) is recorded already: a
        concurrent re-send got there first. Records received before `forget_before` are
        pruned; the newest `constants.FAILED_UPDATES_KEPT` dead letters are kept.
        """

    @abstractmethod
    async def failed_updates(self, limit: int) -> list[FailedUpdate]:
        """The newest dead letters, newest first."""

    @abstractmethod
    async def held_lanes(self, waiting_since: float) -> int:
        """How many lanes are held up: their oldest unfinished command was accepted before
        `waiting_since`, or has failed an attempt already (it carries an error)."""

    def problem(self) -> str | None:
        """What is wrong with the storage right now (short, no path), or None if nothing."""
        return None

    async def check(self) -> str | None:
        """Look at the storage again (a recovering disk, a vanished file); the problem or None.

        Called periodically; the only way a storage problem clears.
        """
        return self.problem()

    # --- threads: one message following an alert group's life (gateway/queue/threads.py) ---

    @abstractmethod
    async def open_thread(self, inlet: str, chat: str, key: str) -> Thread | None:
        """The open thread of `inlet` for `key` in `chat`, if any (a copy)."""

    @abstractmethod
    async def thread(self, thread_id: str) -> Thread | None:
        """A thread by id, open or closed (a copy); None when unknown or pruned."""

    @abstractmethod
    async def save_thread(
        self, thread: Thread, expected: int, commands: Sequence[Command]
    ) -> list[Command] | None:
        """Store `thread` (new when `expected` is 0) and `commands`, atomically.

        None, storing nothing, when the stored version is not `expected` (or, for a new one,
        an open thread with the same inlet, chat and key exists): the caller reads it again and
        redoes its change. A showThread command is left out when the thread already has one
        waiting in the queue (it will show the latest version anyway); the others are always
        stored. Returns the commands stored. `thread.pending`, `message_id`, `shown` and
        `digest` (the worker's to record) are updated to what is stored. Closed threads older
        than a week are pruned.
        """

    @abstractmethod
    async def thread_shown(
        self, thread_id: str, version: int, message_id: int | None, digest: str
    ) -> None:
        """Telegram shows `version` of the thread, rendered as `digest` (and, after the first
        send, `message_id` is its message). An older version than the one recorded changes
        nothing."""

    @abstractmethod
    async def thread_message_gone(self, thread_id: str, message_id: int) -> None:
        """The thread's message `message_id` is no longer in the chat (deleted there): forget
        it, so that the next show sends a new message. Changes nothing when the thread points
        at another message already."""
