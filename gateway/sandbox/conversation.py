"""Control routes that play the users' side: messages, chats, button taps, blocking.

- `POST /sandbox/messages` `{"user_id", "text", "chat_id"?, "reply_to_message_id"?,
  "first_name"?, "last_name"?, "username"?, "bot_id"?}` → `{"update_id", "message_id",
  "chat_id"}`; `update_id` is null when the bot does not get the message (privacy mode in
  groups: only commands, mentions of the bot and replies to it reach a bot).
- `POST /sandbox/chats` `{"chat_id", "type", "title"?, "username"?, "first_name"?, "bot_id"?}`
  → `{"chat": Chat}` (quietly: no update).
- `GET /sandbox/chats/{chat_id}/messages[?bot_id=&include_deleted=1]` → `{"chat_id",
  "messages": [...]}`: what the bot sent there, oldest first, edits applied.
- `POST /sandbox/chats/{chat_id}/migrate` → `{"migrate_to_chat_id"}` (a group becomes a
  supergroup); `POST /sandbox/chats/{chat_id}/kick` and `/add` (bot removed / added back).
- `POST /sandbox/users/{user_id}/block`, `/unblock`, `/deactivate`, `/reactivate`.
- `POST /sandbox/callbacks` `{"user_id", "message_id", "data", "chat_id"?, "bot_id"?}` →
  `{"update_id", "callback_query_id"}`: a tap on an inline button the message really has.

Like Telegram, blocking and kicking send the bot a `my_chat_member` update, and a migration
sends `migrate_to_chat_id` / `migrate_from_chat_id` service messages.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from gateway.sandbox.chats import CHAT_TYPES, SUPERGROUP_BASE, Chat, User, chat_type_for_id
from gateway.sandbox.control import (
    ControlError,
    choose_bot,
    control,
    integer,
    json_object,
    optional_text,
    path_int,
)
from gateway.sandbox.keyboards import callback_data_offered
from gateway.sandbox.keys import SANDBOX_STATE
from gateway.sandbox.markup import Parsed, normalize
from gateway.sandbox.state import BotState, CallbackRecord

ROUTES = web.RouteTableDef()
ADMIN = {"id": 1000, "is_bot": False, "first_name": "Group Admin"}


def _user(bot: BotState, body: dict[str, Any], user_id: int) -> User:
    user = bot.users.get(user_id)
    if user is None:
        user = bot.users[user_id] = User(user_id, first_name=f"User {user_id}")
    for name in ("first_name", "last_name", "username", "language_code"):
        if (value := optional_text(body, name)) is not None:
            setattr(user, name, value)
    return user


def _private_chat(bot: BotState, user: User) -> Chat:
    chat = bot.chats.get(user.id)
    if chat is None:
        chat = bot.chats[user.id] = Chat(user.id, "private")
    chat.first_name, chat.last_name, chat.username = user.first_name, user.last_name, user.username
    return chat


def _member_update(bot: BotState, chat: Chat, actor: dict[str, Any], old: str, new: str) -> None:
    def member(status: str) -> dict[str, Any]:
        body: dict[str, Any] = {"user": bot.user_json(), "status": status}
        if status == "kicked":
            body["until_date"] = 0
        return body

    payload = {
        "chat": chat.to_api(),
        "from": actor,
        "date": int(time.time()),
        "old_chat_member": member(old),
        "new_chat_member": member(new),
    }
    bot.updates.push("my_chat_member", payload, chat.id)


def _addressed(
    bot: BotState, text: str, entities: list[dict[str, Any]], reply_to: int | None, chat: Chat
) -> bool:
    if chat.type not in ("group", "supergroup"):
        return True
    if reply_to is not None:
        target = bot.find_message(chat.id, reply_to)
        if target is not None and target.from_bot:
            return True
    if f"@{bot.username}".lower() in text.lower():
        return True
    command = next((e for e in entities if e["type"] == "bot_command" and e["offset"] == 0), None)
    if command is None:
        return False
    _, _, target_bot = text[: command["length"]].partition("@")
    return not target_bot or target_bot.lower() == bot.username.lower()


def _group_chat(bot: BotState, chat_id: int) -> Chat:
    chat = bot.chats.get(chat_id)
    if chat is None:
        chat = bot.chats[chat_id] = Chat(chat_id, chat_type_for_id(chat_id), f"Group {chat_id}")
    return chat


@ROUTES.post("/sandbox/messages")
@control
async def post_message(request: web.Request) -> web.Response:
    """A user writes to the bot (in private, or in a group the bot is in)."""
    body = await json_object(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ControlError(400, "'text' must be a non-empty string")
    user_id = integer(body.get("user_id"), "user_id", positive=True)
    chat_id = integer(body.get("chat_id", user_id), "chat_id")
    if chat_id > 0 and chat_id != user_id:
        raise ControlError(400, "a private chat's id is its user's id: chat_id must be user_id")
    bot = choose_bot(request, body, create=True)
    user = _user(bot, body, user_id)
    if user.deactivated:
        raise ControlError(400, f"user {user_id} is deactivated")
    chat = _private_chat(bot, user) if chat_id > 0 else _group_chat(bot, chat_id)
    if chat.migrated_to is not None:
        raise ControlError(
            400, "the group was upgraded to a supergroup", migrate_to_chat_id=chat.migrated_to
        )
    if not chat.bot_is_member:
        raise ControlError(400, f"the bot is not a member of chat {chat_id}")
    reply_to = body.get("reply_to_message_id")
    if reply_to is not None:
        reply_to = integer(reply_to, "reply_to_message_id", positive=True)
        if bot.find_message(chat.id, reply_to) is None:
            raise ControlError(400, f"message {reply_to} does not exist in chat {chat.id}")
    if chat.type == "private" and user.blocked:
        user.blocked = False  # writing to a blocked bot restarts it, as in Telegram's apps
        _member_update(bot, chat, user.to_api(), "kicked", "member")
    extra: dict[str, Any] = {}
    if body.get("message_thread_id") is not None:
        thread = integer(body["message_thread_id"], "message_thread_id", positive=True)
        if thread not in chat.topics:
            raise ControlError(400, f"chat {chat.id} has no topic {thread}")
        extra = {"message_thread_id": thread, "is_topic_message": True}
    parsed = normalize(Parsed(text), bot_commands=True)
    channel = chat.type == "channel"
    message = bot.add_message(
        chat,
        from_bot=False,
        sender=None if channel else user.to_api(),
        text=parsed.text,
        entities=parsed.entities,
        reply_to_message_id=reply_to,
        extra=extra,
    )
    update = None
    privacy = request.app[SANDBOX_STATE].settings.group_privacy
    if not privacy or _addressed(bot, parsed.text, parsed.entities, reply_to, chat):
        kind = "channel_post" if channel else "message"
        update = bot.updates.push(kind, bot.message_json(message), chat.id)
    return web.json_response(
        {
            "update_id": update.update_id if update else None,
            "message_id": message.message_id,
            "chat_id": chat.id,
        }
    )


@ROUTES.post("/sandbox/chats")
@control
async def post_chat(request: web.Request) -> web.Response:
    """Create (or rename) a chat without telling the bot."""
    body = await json_object(request)
    chat_id = integer(body.get("chat_id"), "chat_id")
    kind = body.get("type", chat_type_for_id(chat_id) if chat_id else None)
    if kind not in CHAT_TYPES:
        raise ControlError(400, f"'type' must be one of {', '.join(CHAT_TYPES)}")
    expected = chat_type_for_id(chat_id) if chat_id else None
    if chat_id == 0 or (kind != expected and {kind, expected} != {"channel", "supergroup"}):
        raise ControlError(
            400,
            "chat ids: private > 0 (the user's id), group < 0, supergroup and channel "
            f"-100... (below -{SUPERGROUP_BASE})",
        )
    bot = choose_bot(request, body, create=True)
    existing = bot.chats.get(chat_id)
    if existing is not None and existing.type != kind:
        raise ControlError(409, f"chat {chat_id} already exists as a {existing.type}")
    if kind == "private":
        chat = _private_chat(bot, _user(bot, body, chat_id))
    else:
        chat = existing or Chat(chat_id, kind, f"Group {chat_id}")
        bot.chats[chat_id] = chat
        chat.title = optional_text(body, "title") or chat.title
        chat.username = optional_text(body, "username") or chat.username
        if body.get("is_forum") is not None:
            if kind != "supergroup" or not isinstance(body["is_forum"], bool):
                raise ControlError(400, "'is_forum' is true or false, for a supergroup")
            chat.is_forum = body["is_forum"]
    return web.json_response({"chat": chat.to_api()})


def _known_chat(request: web.Request, bot: BotState) -> Chat:
    chat_id = path_int(request, "chat_id")
    chat = bot.chats.get(chat_id)
    if chat is None:
        raise ControlError(404, f"chat {chat_id} is not known to bot {bot.bot_id}")
    return chat


@ROUTES.get("/sandbox/chats/{chat_id}/messages")
@control
async def get_chat_messages(request: web.Request) -> web.Response:
    """What the bot sent to a chat, oldest first."""
    bot = choose_bot(request)
    chat = _known_chat(request, bot)
    include_deleted = request.query.get("include_deleted", "").lower() in ("1", "true")
    sent = sorted(
        (m for m in bot.messages.values() if m.chat_id == chat.id and m.from_bot),
        key=lambda m: m.message_id,
    )
    records = [m.record() for m in sent if include_deleted or not m.deleted]
    return web.json_response({"chat_id": chat.id, "messages": records})


@ROUTES.post("/sandbox/chats/{chat_id}/migrate")
@control
async def migrate_chat(request: web.Request) -> web.Response:
    """Upgrade a group to a supergroup; the old id then answers 400 with the new one."""
    body = await json_object(request)
    bot = choose_bot(request, body)
    chat = _known_chat(request, bot)
    if chat.migrated_to is not None:
        return web.json_response({"migrate_to_chat_id": chat.migrated_to})
    if chat.type != "group":
        raise ControlError(400, f"only a group can be upgraded; chat {chat.id} is a {chat.type}")
    new_id = -(SUPERGROUP_BASE + abs(chat.id))
    while new_id in bot.chats:
        new_id -= 1
    supergroup = bot.chats[new_id] = Chat(new_id, "supergroup", chat.title)
    actor = body.get("user_id")
    sender = bot.users[actor].to_api() if actor in bot.users else ADMIN
    old_note = bot.add_message(chat, from_bot=False, sender=sender, extra={})
    old_note.extra["migrate_to_chat_id"] = new_id
    new_note = bot.add_message(supergroup, from_bot=False, sender=sender, extra={})
    new_note.extra["migrate_from_chat_id"] = chat.id
    chat.migrated_to = new_id
    for note in (old_note, new_note):
        bot.updates.push("message", bot.message_json(note), note.chat_id)
    return web.json_response({"migrate_to_chat_id": new_id})


async def _membership(request: web.Request, member: bool) -> web.Response:
    body = await json_object(request)
    bot = choose_bot(request, body)
    chat = _known_chat(request, bot)
    if chat.type == "private":
        raise ControlError(400, "a private chat has no members to kick: block the user instead")
    if chat.bot_is_member != member:
        chat.bot_is_member = member
        old, new = ("left", "member") if member else ("member", "kicked")
        _member_update(bot, chat, ADMIN, old, new)
    return web.json_response({"chat_id": chat.id, "bot_is_member": chat.bot_is_member})


@ROUTES.post("/sandbox/chats/{chat_id}/kick")
@control
async def kick_bot(request: web.Request) -> web.Response:
    """Remove the bot from a group: sends then answer 403."""
    return await _membership(request, False)


@ROUTES.post("/sandbox/chats/{chat_id}/add")
@control
async def add_bot(request: web.Request) -> web.Response:
    """Add the bot back to a group."""
    return await _membership(request, True)


@ROUTES.post("/sandbox/users/{user_id}/{action:block|unblock|deactivate|reactivate}")
@control
async def user_action(request: web.Request) -> web.Response:
    """Block/unblock the bot, or deactivate/reactivate the user's account."""
    body = await json_object(request)
    bot = choose_bot(request, body)
    user_id = path_int(request, "user_id")
    user = bot.users.get(user_id)
    if user is None:
        raise ControlError(404, f"user {user_id} is not known to bot {bot.bot_id}")
    action = request.match_info["action"]
    if action in ("block", "unblock") and user.blocked != (action == "block"):
        user.blocked = action == "block"
        chat = bot.chats.get(user_id)
        if chat is not None:
            old, new = ("member", "kicked") if user.blocked else ("kicked", "member")
            _member_update(bot, chat, user.to_api(), old, new)
    elif action in ("deactivate", "reactivate"):
        user.deactivated = action == "deactivate"
    return web.json_response(
        {"user_id": user.id, "blocked": user.blocked, "deactivated": user.deactivated}
    )


@ROUTES.post("/sandbox/callbacks")
@control
async def post_callback(request: web.Request) -> web.Response:
    """A user taps an inline button: a `callback_query` update carrying the message."""
    body = await json_object(request)
    user_id = integer(body.get("user_id"), "user_id", positive=True)
    chat_id = integer(body.get("chat_id", user_id), "chat_id")
    message_id = integer(body.get("message_id"), "message_id", positive=True)
    data = body.get("data")
    if not isinstance(data, str) or not data:
        raise ControlError(400, "'data' must be a non-empty string")
    bot = choose_bot(request, body)
    message = bot.find_message(chat_id, message_id)
    if message is None or not message.from_bot:
        raise ControlError(404, f"the bot has no message {message_id} in chat {chat_id}")
    if not callback_data_offered(message.reply_markup, data):
        raise ControlError(400, "the message's inline keyboard offers no button with that data")
    user = _user(bot, body, user_id)
    query_id = str(secrets.randbits(62))
    payload = {
        "id": query_id,
        "from": user.to_api(),
        "message": bot.message_json(message),
        "chat_instance": str(abs(hash((bot.bot_id, chat_id)))),
        "data": data,
    }
    update = bot.updates.push("callback_query", payload, chat_id)
    bot.callbacks[query_id] = CallbackRecord(
        query_id, user_id, chat_id, message_id, data, time.time()
    )
    return web.json_response(
        {"update_id": update.update_id if update else None, "callback_query_id": query_id}
    )
