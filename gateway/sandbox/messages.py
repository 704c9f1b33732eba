"""Bot API methods that write messages: sendMessage, editMessageText,
editMessageReplyMarkup, deleteMessage.

Checks run in Telegram's order: reply markup, text and entities, the chat, the replied-to
message, then the recipient's side (blocked, kicked) and the flood limits; a call that fails
any check changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.sandbox.calls import (
    Call,
    MethodTable,
    admit_send,
    message_id_param,
    require_chat,
)
from gateway.sandbox.chats import Chat, StoredMessage
from gateway.sandbox.formatting import format_text
from gateway.sandbox.keyboards import inline_keyboard, read_reply_markup
from gateway.sandbox.markup import Parsed
from gateway.sandbox.replies import bad_request
from gateway.sandbox.topics import thread_param

METHODS = MethodTable()
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


def _text(call: Call, chat: Chat | None) -> Parsed:
    params = call.params
    return format_text(
        params.string("text"),
        params.string("parse_mode"),
        params.json("entities", "entities"),
        bot_commands=chat is not None and chat.type != "private",
    )


def reply_target(call: Call, chat: Chat) -> int | None:
    params = call.params
    reply = params.json("reply_parameters", "reply parameters")
    if reply is not None and not isinstance(reply, dict):
        raise bad_request("can't parse reply parameters JSON object")
    if reply:
        message_id = reply.get("message_id")
        allow_missing = bool(reply.get("allow_sending_without_reply"))
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise bad_request("can't parse reply parameters JSON object")
        target_chat = reply.get("chat_id", chat.id)
    else:
        message_id = params.integer("reply_to_message_id")
        allow_missing = params.boolean("allow_sending_without_reply")
        target_chat = chat.id
        if message_id == 0:
            return None
    if str(target_chat) == str(chat.id) and call.bot.find_message(chat.id, message_id):
        return message_id
    if allow_missing:
        return None
    raise bad_request("message to be replied not found")


@METHODS.method("sendMessage")
async def send_message(call: Call) -> dict[str, Any]:
    """Send a text message to a chat the bot knows."""
    markup = read_reply_markup(call.params.json("reply_markup", "reply keyboard markup"))
    _text(call, None)
    chat = require_chat(call)
    parsed = _text(call, chat)
    thread = thread_param(call, chat)
    reply_to = reply_target(call, chat)
    admit_send(call, chat)
    extra: dict[str, Any] = {}
    if thread is not None:
        extra = {"message_thread_id": thread, "is_topic_message": True}
    if call.params.boolean("protect_content"):
        extra["has_protected_content"] = True
    message = call.bot.add_message(
        chat,
        from_bot=True,
        text=parsed.text,
        entities=parsed.entities,
        reply_markup=markup,
        reply_to_message_id=reply_to,
        extra=extra,
    )
    return call.bot.message_json(message)


def editable(call: Call) -> tuple[Chat, StoredMessage]:
    """The message an edit* call addresses, checked in Telegram's order: without `chat_id` and
    `message_id` it is an inline message (the sandbox has none), else the chat, then the message
    (a missing `message_id` is simply not found)."""
    message_id = message_id_param(call)
    if not call.params.string("chat_id") and message_id == 0:
        if not call.params.string("inline_message_id"):
            raise bad_request("message identifier is not specified")
        raise bad_request("invalid inline message identifier specified")
    chat = require_chat(call)
    message = call.bot.find_message(chat.id, message_id)
    if message is None:
        raise bad_request("message to edit not found")
    if not message.from_bot:
        raise bad_request("message can't be edited")
    return chat, message


@METHODS.method("editMessageText")
async def edit_message_text(call: Call) -> dict[str, Any]:
    """Replace the text (and inline keyboard) of a message the bot sent."""
    markup = read_reply_markup(call.params.json("reply_markup", "reply keyboard markup"))
    _text(call, None)
    chat, message = editable(call)
    parsed = _text(call, chat)
    if markup is not None and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    same_markup = inline_keyboard(markup) == inline_keyboard(message.reply_markup)
    if parsed.text == message.text and parsed.entities == message.entities and same_markup:
        raise bad_request(NOT_MODIFIED)
    admit_send(call, chat)
    message.text, message.entities = parsed.text, parsed.entities
    message.reply_markup = markup
    message.edit_date = int(time.time())
    return call.bot.message_json(message)


@METHODS.method("editMessageReplyMarkup")
async def edit_message_reply_markup(call: Call) -> dict[str, Any]:
    """Replace (or, without `reply_markup`, remove) a message's inline keyboard."""
    markup = read_reply_markup(call.params.json("reply_markup", "reply keyboard markup"))
    if markup is not None and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    _chat, message = editable(call)
    if inline_keyboard(markup) == inline_keyboard(message.reply_markup):
        raise bad_request(NOT_MODIFIED)
    message.reply_markup = markup
    message.edit_date = int(time.time())
    return call.bot.message_json(message)


@METHODS.method("deleteMessage")
async def delete_message(call: Call) -> bool:
    """Delete a message: any in a private chat, only the bot's own elsewhere."""
    # Client.cpp checks both parameters before looking anything up.
    if not call.params.string("chat_id"):
        raise bad_request("chat identifier is not specified")
    message_id = message_id_param(call)
    if message_id == 0:
        raise bad_request("message identifier is not specified")
    chat = require_chat(call, outgoing=False)
    message = call.bot.find_message(chat.id, message_id)
    if message is None:
        raise bad_request("message to delete not found")
    if chat.type != "private" and not message.from_bot:
        raise bad_request("message can't be deleted")
    message.deleted = True
    return True
