"""One Bot API call in progress, the method table, and the checks most methods share.

Each method module declares its handlers with a `MethodTable`; the HTTP layer merges the
tables and looks methods up case-insensitively.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.constants import PAID_BROADCAST_PARAM
from gateway.sandbox.chats import Chat
from gateway.sandbox.params import Params
from gateway.sandbox.replies import ApiError, bad_request, forbidden, too_many_requests
from gateway.sandbox.stars import BALANCE_TOO_LOW
from gateway.sandbox.state import BotState, SandboxState

MIGRATED = "group chat was upgraded to a supergroup chat"
CANNOT_INITIATE = "bot can't initiate conversation with a user"
_KICKED = {
    "group": "bot was kicked from the group chat",
    "supergroup": "bot was kicked from the supergroup chat",
    "channel": "bot is not a member of the channel chat",
}


@dataclass
class Call:
    """A Bot API call: which bot, which (lower-case) method, with which parameters."""

    sandbox: SandboxState
    bot: BotState
    method: str
    params: Params


Handler = Callable[[Call], Awaitable[Any]]


class MethodTable:
    """Handlers by lower-case method name, remembering Telegram's spelling of each."""

    def __init__(self) -> None:
        self.handlers: dict[str, tuple[str, Handler]] = {}

    def method(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator: register `handler` as Bot API method `name` (e.g. "sendMessage")."""

        def register(handler: Handler) -> Handler:
            self.handlers[name.lower()] = (name, handler)
            return handler

        return register


def chat_id_param(call: Call, name: str = "chat_id") -> int:
    """The chat a call addresses, as an id: `chat_id is empty` / `chat not found` otherwise."""
    raw = call.params.string(name).strip()
    if not raw:
        raise bad_request(f"{name} is empty")
    if raw.startswith("@"):
        username = raw[1:].lower()
        for chat in call.bot.chats.values():
            if chat.username and chat.username.lower() == username and chat.type != "private":
                return chat.id
        raise bad_request("chat not found")
    # Telegram's server reads the leading digits (td::to_integer): "1111abc" is chat 1111, "abc"
    # is chat 0, which is never found.
    return call.params.integer(name)


def require_chat(call: Call, *, outgoing: bool = True) -> Chat:
    """The addressed chat, checked as Telegram checks it.

    Unknown → 400 `chat not found` (with `outgoing`, 403 `bot can't initiate conversation with
    a user` for a user the bot saw only in groups); a migrated group → 400 with
    `migrate_to_chat_id`; with `outgoing` (anything that reaches the other side), a blocked bot
    or deactivated user → 403, a bot no longer in the group → 403.
    """
    chat_id = chat_id_param(call)
    chat = call.bot.chats.get(chat_id)
    if chat is None and outgoing and chat_id in call.bot.users:
        # Seen in a group but never started the bot: Telegram knows the user, not the chat.
        raise forbidden(CANNOT_INITIATE)
    if chat is None:
        raise bad_request("chat not found")
    if chat.migrated_to is not None:
        raise ApiError(400, f"Bad Request: {MIGRATED}", {"migrate_to_chat_id": chat.migrated_to})
    if outgoing:
        if chat.type == "private":
            user = call.bot.users.get(chat.id)
            if user is not None and user.deactivated:
                raise forbidden("user is deactivated")
            if user is not None and user.blocked:
                raise forbidden("bot was blocked by the user")
        elif not chat.bot_is_member:
            raise forbidden(_KICKED[chat.type])
    return chat


def admit_send(call: Call, chat: Chat, messages: int = 1) -> None:
    """Apply the flood limits to a counted call (429 when over a limit); an album counts as
    its `messages` once admitted. With `allow_paid_broadcast` (and paid broadcast enabled)
    the bot's Stars pay for it, or it is refused (`gateway.sandbox.stars`)."""
    flood, stars = call.sandbox.flood, call.bot.stars
    paid = flood.paid_enabled() and call.params.boolean(PAID_BROADCAST_PARAM)
    if paid and not stars.can_pay(messages):
        stars.refused += 1
        raise bad_request(BALANCE_TOO_LOW)
    outcome = flood.admit(call.bot.bot_id, chat.id, messages=messages, paid=paid)
    if isinstance(outcome, float):
        call.sandbox.stats.flood_429 += 1
        raise too_many_requests(outcome)
    if paid:
        stars.charge(messages)
    stars.record(chat.id, messages, paid)
    call.sandbox.stats.record_send(outcome, messages)


def message_id_param(call: Call, name: str = "message_id") -> int:
    """A message id parameter as Telegram's server reads it: 0 when absent, not a number or
    negative (`Client::get_message_id`); each method decides what 0 means."""
    return max(call.params.integer(name), 0)
