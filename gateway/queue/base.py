"""The queue contract every backend honours.

The queue is the source of truth for commands. It keeps one lane per chat: within a lane,
commands are delivered in the order they were accepted, and a lane whose oldest command is
waiting (backoff, flood pause) holds the ones behind it. The scheduler (`gateway.worker`)
decides *which* lane goes next; the queue only answers for order and state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from gateway.commands import Command, Status


class Queue(ABC):
    """Storage of commands across their lifecycle."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare storage (create tables, ...)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release storage."""

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
    async def save_progress(self, command_id: str, result: Any, now: float) -> None:
        """Record a partial result (the parts of a split message sent so far); status unchanged."""

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
    async def recover(self) -> int:
        """At start-up: put every `sending` command back to `queued`; how many there were."""

    @abstractmethod
    async def depth(self) -> int:
        """How many commands are not final (queued or sending)."""

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
