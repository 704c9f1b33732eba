"""What the bot does with updates from people: the aiogram dispatcher and its handlers.

Only allowed users reach a handler; anyone else is logged and, when a refusal text is
configured, told so politely. Every answer goes out through the outbox, like any other command.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher, F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message, TelegramObject, Update, User

from gateway import constants as c
from gateway.outbox import Outbox

logger = logging.getLogger(__name__)

HELP_TEXT = (
    "<b>Telegram Gateway</b>\n"
    "Internal services send you messages through this bot.\n\n"
    "Commands:\n"
    "/help — this message\n"
    "/start — the same"
)


def _sender(update: Update) -> User | None:
    event = update.event
    user = getattr(event, "from_user", None)
    return user if isinstance(user, User) else None


class AllowedUsers(BaseMiddleware):
    """Stops every update whose sender is not on the allow-list before any handler runs."""

    def __init__(self, allowed: frozenset[int], outbox: Outbox, refusal_text: str) -> None:
        self._allowed = allowed
        self._outbox = outbox
        self._refusal = refusal_text

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        user = _sender(event)
        if user is not None and user.id in self._allowed:
            return await handler(event, data)
        who = f"user {user.id}" if user else "no sender"
        logger.info(
            "ignored %s update %d from %s: not allowed", event.event_type, event.update_id, who
        )
        message = event.message
        if self._refusal and message is not None and message.chat.type == "private":
            await self._outbox.send("sendMessage", chat_id=message.chat.id, text=self._refusal)
        return None


def build_router(outbox: Outbox) -> Router:
    """The handlers for allowed users' messages."""
    router = Router(name="gateway")

    @router.message(CommandStart())
    @router.message(Command("help"))
    async def help_command(message: Message) -> None:
        await outbox.send(
            "sendMessage",
            chat_id=message.chat.id,
            text=HELP_TEXT,
            parse_mode="HTML",
            reply_parameters={"message_id": message.message_id},
        )

    @router.message(F.text.startswith("/"))
    async def unknown_command(message: Message) -> None:
        name = (message.text or "").split(maxsplit=1)[0]
        await outbox.send(
            "sendMessage",
            chat_id=message.chat.id,
            text=f"Unknown command {html.escape(name)}. Send /help for the list.",
            parse_mode="HTML",
        )

    return router


def build_dispatcher(outbox: Outbox, allowed: frozenset[int], refusal_text: str) -> Dispatcher:
    """A dispatcher that filters senders, then routes to the gateway's handlers."""
    dispatcher = Dispatcher(disable_fsm=True)
    dispatcher.update.outer_middleware(AllowedUsers(allowed, outbox, refusal_text))
    dispatcher.include_router(build_router(outbox))
    return dispatcher


def allowed_updates() -> list[str]:
    """What setWebhook asks Telegram to send: only what the gateway handles."""
    return list(c.HANDLED_UPDATE_TYPES)
