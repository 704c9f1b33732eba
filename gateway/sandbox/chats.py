"""Users, chats and messages as one bot sees them.

Chat ids follow Telegram: a private chat's id is its user's id, a basic group's id is
negative, a supergroup's or channel's is `-100` followed by the channel id. Message ids are
shared by the user's and the bot's messages and never reused; like Telegram's, one sequence
per bot numbers all its private chats and basic groups, and each supergroup or channel has
its own (`Chat.take_message_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHAT_TYPES = ("private", "group", "supergroup", "channel")
SUPERGROUP_BASE = 1_000_000_000_000
#: Message fields beside the text that the control API shows.
RECORDED_EXTRAS = (
    "caption",
    "caption_entities",
    "media_group_id",
    "message_thread_id",
    "is_topic_message",
    "has_protected_content",
    "location",
)


def chat_type_for_id(chat_id: int) -> str:
    """The type a chat id implies: private (> 0), supergroup (-100...), group (other < 0)."""
    if chat_id > 0:
        return "private"
    return "supergroup" if -chat_id > SUPERGROUP_BASE else "group"


@dataclass
class User:
    """A Telegram user talking to the bot."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    blocked: bool = False
    deactivated: bool = False

    def to_api(self) -> dict[str, Any]:
        """The Bot API `User` object."""
        body: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for name in ("last_name", "username", "language_code"):
            if (value := getattr(self, name)) is not None:
                body[name] = value
        return body


@dataclass
class Chat:
    """A chat the bot is in; `migrated_to` is set once a group became a supergroup."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    next_message_id: int = 1
    migrated_to: int | None = None
    bot_is_member: bool = True
    #: A forum supergroup has topics: thread id → name.
    is_forum: bool = False
    topics: dict[int, str] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """The Bot API `Chat` object."""
        body: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            body["first_name"] = self.first_name or ""
            if self.last_name:
                body["last_name"] = self.last_name
        else:
            body["title"] = self.title or ""
        if self.username:
            body["username"] = self.username
        if self.type == "group":
            body["all_members_are_administrators"] = True
        if self.is_forum:
            body["is_forum"] = True
        return body

    def take_message_id(self) -> int:
        """The next message id of this chat."""
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class StoredMessage:
    """A message in a chat, with edits and deletion applied."""

    chat_id: int
    message_id: int
    sender: dict[str, Any] | None
    date: int
    from_bot: bool
    text: str | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: The files of a message (what the control API shows: sizes, name, MIME type).
    media: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the control API shows of a message the bot sent."""
        return {
            "message_id": self.message_id,
            "chat_id": self.chat_id,
            "date": self.date,
            "text": self.text,
            "entities": self.entities,
            "reply_markup": self.reply_markup,
            "reply_to_message_id": self.reply_to_message_id,
            "edit_date": self.edit_date,
            "deleted": self.deleted,
            **{key: self.extra[key] for key in RECORDED_EXTRAS if key in self.extra},
            **({"media": self.media} if self.media else {}),
        }
