"""The shapes the worker's collaborators take, and small helpers every delivery module uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway import telegram
from gateway.commands import Command

ServiceExecutor = Callable[[Command], Awaitable[telegram.Outcome]]
FailureHandler = Callable[[Command, dict[str, Any]], Awaitable[None]]


class Deferred(Protocol):
    """Commands whose Bot API call is decided when the worker picks them up (`showThread`:
    send or edit an inlet's message, gateway/inlets/show.py)."""

    async def resolve(self, command: Command) -> tuple[str, dict[str, Any]] | None:
        """The call to make now, or None when there is nothing to do."""

    async def delivered(self, command: Command, method: str, result: Any) -> None:
        """The call `resolve` gave was delivered with `result`."""

    async def replace(
        self, command: Command, method: str, params: dict[str, Any], failure: telegram.Failure
    ) -> tuple[str, dict[str, Any]] | None:
        """The call `resolve` gave failed for good: the call to make instead (an edit of a
        message deleted in the chat becomes a new message), or None."""


class DeliveryHooks:
    """Observers of what the worker does (metrics, status waiters). All no-ops here."""

    def sent(self, command: Command, latency: float) -> None:
        """A command was delivered `latency` seconds after it was accepted."""

    def failed(self, command: Command, reason: str) -> None:
        """A command failed for good."""

    def retried(self, command: Command, reason: str) -> None:
        """A command goes back to the queue."""

    def flood_wait(self, command: Command, retry_after: float) -> None:
        """Telegram answered 429."""


def flood_key(chat: int | str) -> int | str:
    """Flood control is keyed by chat id: numeric ids as ints (negative ones are groups)."""
    if isinstance(chat, int):
        return chat
    try:
        return int(chat)
    except ValueError:
        return chat


def log_fields(command: Command) -> dict[str, Any]:
    """`extra=` for a log line about `command` (fields of the JSON log format)."""
    return {"command_id": command.id, "chat_id": command.chat_id, "method": command.method}
