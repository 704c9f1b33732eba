"""Forum topics: createForumTopic, and `message_thread_id` checked on every send.

A forum supergroup (created through the control API with `"is_forum": true`) has topics; a
topic's id is the id of the service message that created it, as in Telegram. A send with a
`message_thread_id` that is no topic of the chat is 400 `message thread not found`.
"""

from __future__ import annotations

from typing import Any

from gateway.sandbox.calls import Call, MethodTable, require_chat
from gateway.sandbox.chats import Chat
from gateway.sandbox.replies import bad_request

METHODS = MethodTable()
MAX_TOPIC_NAME = 128
#: Telegram's default icon colour of a new topic (one of its six).
DEFAULT_ICON_COLOR = 7322096
ICON_COLORS = frozenset({7322096, 16766590, 13338331, 9367192, 16749490, 16478047})


def thread_param(call: Call, chat: Chat) -> int | None:
    """The call's `message_thread_id`: None when absent, else a topic of the chat."""
    thread = call.params.integer("message_thread_id")
    if not thread:
        return None
    if thread not in chat.topics:
        raise bad_request("message thread not found")
    return thread


@METHODS.method("createForumTopic")
async def create_forum_topic(call: Call) -> dict[str, Any]:
    """A new topic in a forum supergroup."""
    chat = require_chat(call)
    if chat.type != "supergroup" or not chat.is_forum:
        raise bad_request("the chat is not a forum")
    name = call.params.string("name").strip()
    if not name:
        raise bad_request("TOPIC_TITLE_EMPTY")  # unverified wording
    if len(name) > MAX_TOPIC_NAME:
        raise bad_request("TOPIC_TITLE_TOO_LONG")  # unverified wording
    color = call.params.integer("icon_color", DEFAULT_ICON_COLOR)
    if color not in ICON_COLORS:
        raise bad_request("TOPIC_ICON_COLOR_INVALID")  # unverified wording
    topic = {"name": name, "icon_color": color}
    service = call.bot.add_message(
        chat, from_bot=True, extra={"forum_topic_created": topic, "is_topic_message": True}
    )
    service.extra["message_thread_id"] = service.message_id
    chat.topics[service.message_id] = name
    return {"message_thread_id": service.message_id, **topic}
