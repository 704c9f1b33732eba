"""Bot API methods about the bot itself and its chats: getMe, logOut, close, getChat,
sendChatAction, the bot command list and answerCallbackQuery.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from gateway.sandbox.calls import Call, MethodTable, require_chat
from gateway.sandbox.replies import bad_request

METHODS = MethodTable()
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
SCOPE_TYPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
COMMAND_PATTERN = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_COMMANDS = 100
MAX_COMMAND_DESCRIPTION = 256
MAX_CALLBACK_ANSWER_TEXT = 200
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"


@METHODS.method("getMe")
async def get_me(call: Call) -> dict[str, Any]:
    """The bot's own User object."""
    return call.bot.me()


@METHODS.method("logOut")
async def log_out(call: Call) -> bool:
    """Accepted; the sandbox keeps serving the bot."""
    return True


@METHODS.method("close")
async def close(call: Call) -> bool:
    """Accepted; the sandbox has no instance to close."""
    return True


@METHODS.method("getChat")
async def get_chat(call: Call) -> dict[str, Any]:
    """A ChatFullInfo with the fields the sandbox knows."""
    chat = require_chat(call, outgoing=False)
    gifts = ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription")
    return {
        **chat.to_api(),
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {**dict.fromkeys(gifts, True), "gifts_from_channels": False},
    }


@METHODS.method("sendChatAction")
async def send_chat_action(call: Call) -> bool:
    """Show a chat action; the chat must exist and accept the bot."""
    chat_action = call.params.string("action").strip().lower()
    require_chat(call)
    if chat_action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    return True


def _scope_key(call: Call) -> tuple[str, str]:
    scope = call.params.json("scope", "BotCommandScope")
    if scope is None:
        scope = {"type": "default"}
    if not isinstance(scope, dict) or scope.get("type") not in SCOPE_TYPES:
        raise bad_request("can't parse BotCommandScope JSON object")
    if scope["type"].startswith("chat") and scope.get("chat_id") in (None, ""):
        raise bad_request("chat_id is empty")
    key = json.dumps(scope, sort_keys=True, separators=(",", ":"))
    return key, call.params.string("language_code").strip().lower()


def _command_field(item: dict[str, Any], name: str) -> str:
    # td's get_required_string_field: a string, or a number taken as its text.
    if name not in item:
        raise bad_request(f"can't parse BotCommand: Can't find field \"{name}\"")
    value = item[name]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise bad_request(f'can\'t parse BotCommand: Field "{name}" must be of type String')
    return value


def _read_commands(call: Call) -> list[dict[str, str]]:
    # Client.cpp's get_bot_commands: no `commands` at all is the empty list.
    if not call.params.string("commands"):
        return []
    value = call.params.json("commands", "commands")
    if not isinstance(value, list):
        raise bad_request("expected an Array of BotCommand")
    if len(value) > MAX_COMMANDS:
        raise bad_request("BOT_COMMANDS_TOO_MUCH")
    commands = []
    for item in value:
        if not isinstance(item, dict):
            raise bad_request("can't parse BotCommand: expected an Object")
        command, description = _command_field(item, "command"), _command_field(item, "description")
        if not COMMAND_PATTERN.match(command):
            raise bad_request("BOT_COMMAND_INVALID")
        description = description.strip()
        if not 1 <= len(description) <= MAX_COMMAND_DESCRIPTION:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        commands.append({"command": command, "description": description})
    return commands


@METHODS.method("setMyCommands")
async def set_my_commands(call: Call) -> bool:
    """Store the command list of a scope and language."""
    commands = _read_commands(call)
    key = _scope_key(call)
    if commands:
        call.bot.commands[key] = commands
    else:
        call.bot.commands.pop(key, None)
    return True


@METHODS.method("getMyCommands")
async def get_my_commands(call: Call) -> list[dict[str, str]]:
    """The command list of a scope and language ([] when none)."""
    return call.bot.commands.get(_scope_key(call), [])


@METHODS.method("deleteMyCommands")
async def delete_my_commands(call: Call) -> bool:
    """Forget the command list of a scope and language."""
    call.bot.commands.pop(_scope_key(call), None)
    return True


@METHODS.method("answerCallbackQuery")
async def answer_callback_query(call: Call) -> bool:
    """Answer a callback query the sandbox sent; each can be answered once."""
    params = call.params
    # Without an id Telegram's server asks about query 0, which is never valid.
    record = call.bot.callbacks.get(params.string("callback_query_id"))
    if record is None or record.answer is not None:
        raise bad_request(QUERY_INVALID)
    text = params.string("text")
    if len(text) > MAX_CALLBACK_ANSWER_TEXT:
        raise bad_request("MESSAGE_TOO_LONG")
    if params.string("url"):
        raise bad_request("URL_INVALID")
    record.answer = {
        "text": text or None,
        "show_alert": params.boolean("show_alert"),
        "cache_time": params.integer("cache_time"),
        "answered_at": int(time.time()),
    }
    return True
