"""What the bot does with updates from people: the aiogram dispatcher and its handlers.

Only allowed users reach a handler; anyone else is logged and, when a refusal text is
configured, told so politely. Every answer goes out through the outbox, like any other command.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiogram import BaseMiddleware, Dispatcher, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, TelegramObject, Update, User

from gateway import constants as c
from gateway.commands import Command as CommandRecord
from gateway.outbox import Outbox
from gateway.questions import PREFIX, Questions
from gateway.routes import Route
from gateway.services import dispatch_command

logger = logging.getLogger(__name__)


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
        if event.callback_query is not None:
            await self._outbox.send(
                "answerCallbackQuery",
                callback_query_id=event.callback_query.id,
                text="Not yours to answer.",
                show_alert=True,
            )
            return None
        message = event.message
        if self._refusal and message is not None and message.chat.type == "private":
            await self._outbox.send("sendMessage", chat_id=message.chat.id, text=self._refusal)
        return None


def ignorable_stranger(
    data: dict[str, Any], allowed: frozenset[int], refusal_text: str
) -> int | None:
    """The sender's id when the raw update is a message from someone not allowed that gets no
    answer at all (no refusal text for a private chat), else None.

    Decided on the JSON as Telegram sent it, before aiogram builds a model: such an update is
    acknowledged without being validated, handled or stored (`AllowedUsers` would stop it
    before any handler, and nothing it leads to would change on a re-send). Anything else —
    an allowed sender, a tap (answered), a refusal to send, a shape that is not plainly a
    message with a sender — takes the full path.
    """
    message = data.get("message")
    if len(data) != 2 or not isinstance(message, dict):
        return None
    sender = message.get("from")
    user_id = sender.get("id") if isinstance(sender, dict) else None
    if type(user_id) is not int or user_id in allowed:
        return None
    if refusal_text:
        chat = message.get("chat")
        chat_type = chat.get("type") if isinstance(chat, dict) else None
        if not isinstance(chat_type, str) or chat_type == "private":
            return None
    return user_id


def help_text(routes: Iterable[Route], user_id: int) -> str:
    """What the gateway offers this user: its own commands and the routes they may use."""
    lines = [
        "<b>Telegram Gateway</b>",
        "Internal services send you messages through this bot, and these commands reach them:",
        "",
    ]
    for route in routes:
        if route.may_use(user_id):
            lines.append(f"/{route.command} — {html.escape(route.description)}")
    lines += ["/help — this message"]
    return "\n".join(lines)


def build_router(outbox: Outbox, routes: Sequence[Route], questions: Questions) -> Router:
    """The handlers for allowed users' messages and taps."""
    router = Router(name="gateway")
    by_name = {route.command: route for route in routes}

    @router.message(CommandStart())
    @router.message(Command("help"))
    async def help_command(message: Message) -> None:
        user_id = message.from_user.id if message.from_user else 0
        await outbox.send(
            "sendMessage",
            chat_id=message.chat.id,
            text=help_text(routes, user_id),
            parse_mode="HTML",
            reply_parameters={"message_id": message.message_id},
            **topic_of(message),
        )

    async def routed_command(message: Message, command: CommandObject) -> None:
        route = by_name[command.command]
        user = message.from_user
        reply = {"message_id": message.message_id}
        if user is None or not route.may_use(user.id):
            await outbox.send(
                "sendMessage",
                chat_id=message.chat.id,
                text=f"/{route.command} is not available to you.",
                reply_parameters=reply,
                **topic_of(message),
            )
            return
        payload = {
            "command": route.command,
            "args": command.args.split() if command.args else [],
            "text": message.text,
            "user": user.model_dump(mode="json", exclude_none=True),
            "chat": message.chat.model_dump(mode="json", exclude_none=True),
            "message_id": message.message_id,
            "date": int(message.date.timestamp()),
        }
        job = dispatch_command(
            route, payload, message.chat.id, message.message_id, **topic_of(message)
        )
        await outbox.submit([job])
        logger.info("dispatching /%s from user %d as %s", route.command, user.id, job.id)

    if by_name:  # registered before the catch-all for unknown commands
        router.message(Command(*by_name))(routed_command)

    @router.message(F.text.startswith("/"))
    async def unknown_command(message: Message) -> None:
        name = (message.text or "").split(maxsplit=1)[0]
        await outbox.send(
            "sendMessage",
            chat_id=message.chat.id,
            text=f"Unknown command {html.escape(name)}. Send /help for the list.",
            parse_mode="HTML",
            **topic_of(message),
        )

    async def answers_a_question(message: Message) -> dict[str, Any] | bool:
        question = await questions.question_replied_to(message)
        return {"question": question} if question is not None else False

    @router.message(F.reply_to_message, answers_a_question)
    async def reply_to_question(message: Message, question: CommandRecord) -> None:
        await questions.on_reply(message, question)

    @router.callback_query(F.data.startswith(PREFIX))
    async def tap(query: CallbackQuery) -> None:
        await questions.on_tap(query)

    return router


def topic_of(message: Message) -> dict[str, int]:
    """`message_thread_id` for an answer to a message in a forum topic (answered there)."""
    if message.is_topic_message and message.message_thread_id:
        return {"message_thread_id": message.message_thread_id}
    return {}


def build_dispatcher(
    outbox: Outbox,
    allowed: frozenset[int],
    refusal_text: str,
    routes: Sequence[Route],
    questions: Questions,
) -> Dispatcher:
    """A dispatcher that filters senders, then routes to the gateway's handlers."""
    dispatcher = Dispatcher(disable_fsm=True)
    dispatcher.update.outer_middleware(AllowedUsers(allowed, outbox, refusal_text))
    dispatcher.include_router(build_router(outbox, routes, questions))
    return dispatcher


def bot_commands(routes: Iterable[Route]) -> list[dict[str, str]]:
    """The bot's menu (setMyCommands): every route, then help."""
    menu = [{"command": route.command, "description": route.description} for route in routes]
    return [*menu, {"command": "help", "description": "What this bot can do"}]


def allowed_updates() -> list[str]:
    """What setWebhook asks Telegram to send: only what the gateway handles."""
    return list(c.HANDLED_UPDATE_TYPES)
