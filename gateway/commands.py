"""A command: one Bot API call the gateway accepted and owes a delivery attempt."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Lifecycle: queued → sending → sent | failed (sending → queued again on retry).

    A question (a message that expects a reply) goes sending → awaiting_reply → answered |
    expired instead of sent.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    AWAITING_REPLY = "awaiting_reply"
    ANSWERED = "answered"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({Status.SENT, Status.FAILED, Status.ANSWERED, Status.EXPIRED})


class _RandomPool:
    """Random bytes from the OS, fetched 4 KiB at a time: one syscall per 256 ids, not per id."""

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        if self._offset + size > len(self._buffer):
            self._buffer, self._offset = os.urandom(4096), 0
        chunk = self._buffer[self._offset : self._offset + size]
        self._offset += size
        return chunk


_POOL = _RandomPool()


def new_command_id() -> str:
    """An opaque, unguessable id: 128 random bits from the OS's CSPRNG, URL-safe."""
    return "cmd_" + base64.urlsafe_b64encode(_POOL.take(16)).rstrip(b"=").decode()


def chat_key(chat_id: int | str | None) -> str:
    """The key that orders commands: one queue lane per chat."""
    return "" if chat_id is None else str(chat_id)


@dataclass
class Command:
    """A Bot API call and what has happened to it so far."""

    method: str
    params: dict[str, Any]
    id: str = field(default_factory=new_command_id)
    status: Status = Status.QUEUED
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0
    #: Unix time before which the command is not (re)tried.
    not_before: float = 0.0
    result: Any = None
    #: `{"code": ..., "description": ...}` from Telegram or the gateway.
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    #: Position in acceptance order, set by the queue.
    seq: int = 0
    #: The API client that submitted it (None for the gateway's own messages).
    client: str | None = None
    #: Extension data of the gateway's own features (kept as JSON with the command).
    meta: dict[str, Any] = field(default_factory=dict)
    #: The ordering lane: the chat the command was accepted for. It stays put when the chat
    #: migrates, so later commands keep their order behind it.
    lane: str = ""

    def __post_init__(self) -> None:
        if not self.updated_at:
            self.updated_at = self.created_at
        if not self.lane:
            self.lane = chat_key(self.chat_id)

    @property
    def chat_id(self) -> int | str | None:
        value = self.params.get("chat_id")
        return value if isinstance(value, int | str) else None

    def public(self) -> dict[str, Any]:
        """The command as `GET /commands/{id}` shows it."""
        return {
            "id": self.id,
            "status": self.status.value,
            "method": self.method,
            "chat_id": self.chat_id,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "result": self.result,
            "error": self.error,
            **({"reply": self.meta["reply"]} if "reply" in self.meta else {}),
        }
