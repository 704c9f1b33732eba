"""`[[chat_defaults]]`: per-chat defaults of every send (a forum topic, silent delivery).

```toml
[[chat_defaults]]
chat_id = -1001234567890      # a forum supergroup
thread_id = 42                # its "Alerts" topic: sends without message_thread_id go there
disable_notification = true   # silent unless a request says otherwise
```

A request's own `message_thread_id` / `disable_notification` always wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.commands import Command
from gateway.errors import ConfigError

FIELDS = frozenset({"chat_id", "thread_id", "disable_notification"})
#: Methods that post a new message (the defaults do not apply to edits and deletions).
SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendAnimation",
        "sendMediaGroup",
        "sendLocation",
    }
)


@dataclass(frozen=True)
class ChatDefault:
    """Defaults for the sends to one chat."""

    chat_id: int
    thread_id: int | None = None
    disable_notification: bool | None = None


def parse_chat_defaults(raw: Any, source: str) -> tuple[ChatDefault, ...]:
    """The `[[chat_defaults]]` array of tables; ConfigError naming the entry and key."""
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'chat_defaults' must be an array of tables")
    found: dict[int, ChatDefault] = {}
    for number, entry in enumerate(raw, start=1):
        where = f"{source}: [[chat_defaults]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
        chat_id = entry.get("chat_id")
        if not isinstance(chat_id, int) or isinstance(chat_id, bool) or chat_id == 0:
            raise ConfigError(f"{where}: chat_id must be a non-zero integer")
        thread_id = entry.get("thread_id")
        if thread_id is not None and (not _is_int(thread_id) or thread_id <= 0):
            raise ConfigError(f"{where}: thread_id must be a positive integer")
        silent = entry.get("disable_notification")
        if silent is not None and not isinstance(silent, bool):
            raise ConfigError(f"{where}: disable_notification must be true or false")
        if chat_id in found:
            raise ConfigError(f"{where}: chat_id {chat_id} is listed twice")
        found[chat_id] = ChatDefault(chat_id, thread_id, silent)
    return tuple(found.values())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def apply_chat_defaults(commands: Iterable[Command], defaults: Iterable[ChatDefault]) -> None:
    """Fill in each send's thread and silence from its chat's defaults."""
    by_chat = {d.chat_id: d for d in defaults}
    if not by_chat:
        return
    for command in commands:
        default = by_chat.get(command.chat_id) if isinstance(command.chat_id, int) else None
        if default is None or command.method not in SEND_METHODS:
            continue
        if default.thread_id is not None and "message_thread_id" not in command.params:
            command.params["message_thread_id"] = default.thread_id
        if default.disable_notification is not None:
            command.params.setdefault("disable_notification", default.disable_notification)
