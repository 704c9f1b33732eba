"""The sandbox's state: its bots, each with chats, messages, webhook and update queue.

Every distinct well-formed token is its own bot, identified by the token's digits. The first
token used with a bot id owns it: another token with the same digits is answered 401, like a
revoked token. The control API can create a bot by id before its token is first used (users
may write to a bot that is not running yet), and never shows tokens.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.sandbox.chats import Chat, StoredMessage, User
from gateway.sandbox.faults import Faults
from gateway.sandbox.files import SandboxFiles
from gateway.sandbox.keyboards import inline_keyboard
from gateway.sandbox.limits import FloodControl, FloodLimits
from gateway.sandbox.settings import SandboxSettings
from gateway.sandbox.stars import StarAccount
from gateway.sandbox.stats import Stats
from gateway.sandbox.updates import ALL_UPDATE_TYPES, DEFAULT_ALLOWED, UpdateQueue

TOKEN_PATTERN = re.compile(r"^([1-9][0-9]{0,18}):[A-Za-z0-9_-]+$")
#: Telegram's update ids start at "a certain positive number" (in practice nine digits), so
#: a client that assumes they start at 1 or 0 shows up here rather than in production.
FIRST_UPDATE_ID_RANGE = (100_000_000, 899_999_999)


@dataclass
class WebhookConfig:
    """A webhook as set by setWebhook; `version` changes whenever it is set anew."""

    url: str
    host: str
    port: int
    certificate: bytes | None
    ip_address: str | None
    max_connections: int
    secret_token: str | None
    version: int
    resolved_ip: str | None = None


@dataclass
class CallbackRecord:
    """A callback query the sandbox sent, and the bot's answer to it."""

    id: str
    user_id: int
    chat_id: int
    message_id: int
    data: str
    sent_at: float
    answer: dict[str, Any] | None = None


class BotState:
    """Everything one bot has: its chats and users, messages, webhook and updates."""

    def __init__(self, bot_id: int, settings: SandboxSettings) -> None:
        self.bot_id = bot_id
        self._token: str | None = None
        self.first_name = "Sandbox Bot"
        self.username = f"sandbox_{bot_id}_bot"
        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.messages: dict[tuple[int, int], StoredMessage] = {}
        self.updates = UpdateQueue(
            settings.update_ttl_seconds,
            settings.history_size,
            next_id=random.randint(*FIRST_UPDATE_ID_RANGE),
        )
        #: Private chats and basic groups share the bot's one message id sequence.
        self.next_common_message_id = 1
        self.next_set_webhook_at = 0.0
        self.previous_poll_offset: int | None = None
        self.previous_poll_at = 0.0
        self.webhook: WebhookConfig | None = None
        self.webhook_versions = 0
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.poller: asyncio.Future[str | None] | None = None
        #: Paid broadcast: the Stars balance and recent counted sends (gateway.sandbox.stars).
        self.stars = StarAccount()

    def __repr__(self) -> str:
        return f"BotState(bot_id={self.bot_id}, username={self.username!r})"

    def claim(self, token: str) -> bool:
        """Bind the token on first use; False when another token owns this bot id."""
        if self._token is None:
            self._token = token
        return self._token == token

    @property
    def has_token(self) -> bool:
        """Whether a client has used this bot's token yet."""
        return self._token is not None

    def user_json(self) -> dict[str, Any]:
        """The bot as a Bot API `User`."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def me(self) -> dict[str, Any]:
        """getMe's answer."""
        return {
            **self.user_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def add_message(self, chat: Chat, *, from_bot: bool, **fields: Any) -> StoredMessage:
        """Store a new message in `chat` with the chat's next id."""
        sender = fields.pop("sender", None)
        if from_bot:
            sender = self.user_json()
        message = StoredMessage(
            chat_id=chat.id,
            message_id=self._take_message_id(chat),
            sender=sender,
            date=int(time.time()),
            from_bot=from_bot,
            **fields,
        )
        self.messages[(chat.id, message.message_id)] = message
        return message

    def _take_message_id(self, chat: Chat) -> int:
        # Telegram numbers the messages of private chats and basic groups in one sequence per
        # account; supergroups and channels number their own.
        if chat.type in ("supergroup", "channel"):
            return chat.take_message_id()
        message_id = self.next_common_message_id
        self.next_common_message_id += 1
        return message_id

    def find_message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        """A message that exists and was not deleted."""
        message = self.messages.get((chat_id, message_id))
        return None if message is None or message.deleted else message

    def message_json(self, message: StoredMessage, *, nested: bool = False) -> dict[str, Any]:
        """The Bot API `Message` object (with `reply_to_message` one level deep)."""
        chat = self.chats[message.chat_id]
        body: dict[str, Any] = {"message_id": message.message_id}
        if message.sender is not None and chat.type != "channel":
            body["from"] = message.sender
        else:  # a channel's posts, the bot's included, are signed by the channel
            body["sender_chat"] = chat.to_api()
        body["chat"] = chat.to_api()
        body["date"] = message.date
        if message.edit_date is not None:
            body["edit_date"] = message.edit_date
        if message.reply_to_message_id is not None and not nested:
            target = self.find_message(message.chat_id, message.reply_to_message_id)
            if target is not None:
                body["reply_to_message"] = self.message_json(target, nested=True)
        if message.text is not None:
            body["text"] = message.text
            if message.entities:
                body["entities"] = message.entities
        body.update(message.extra)
        if (keyboard := inline_keyboard(message.reply_markup)) is not None:
            body["reply_markup"] = keyboard
        return body

    def webhook_info(self) -> dict[str, Any]:
        """getWebhookInfo's answer."""
        self.updates.expire()
        hook = self.webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": bool(hook and hook.certificate),
            "pending_update_count": len(self.updates.pending),
        }
        if hook is not None:
            ip_address = hook.ip_address or hook.resolved_ip
            if ip_address:
                info["ip_address"] = ip_address
        if self.last_error_date is not None:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        if hook is not None:
            info["max_connections"] = hook.max_connections
        if self.updates.allowed != DEFAULT_ALLOWED:
            info["allowed_updates"] = [t for t in ALL_UPDATE_TYPES if t in self.updates.allowed]
        return info

    def summary(self) -> dict[str, Any]:
        """What the control API shows of a bot (never its token)."""
        return {
            "bot_id": self.bot_id,
            "username": self.username,
            "token_used": self.has_token,
            "chats": sorted(self.chats),
            "webhook": self.webhook_info(),
        }


@dataclass
class SandboxState:
    """The whole sandbox: settings, bots, flood control, faults and statistics."""

    settings: SandboxSettings
    bots: dict[int, BotState] = field(default_factory=dict)
    flood: FloodControl = field(init=False)
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    files: SandboxFiles = field(default_factory=SandboxFiles)
    #: Called with a bot whenever its webhook was set, changed or deleted.
    webhook_listeners: list[Callable[[BotState], None]] = field(default_factory=list)
    closing: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.flood = FloodControl(
            FloodLimits(
                s.global_per_second, s.chat_per_second, s.group_per_minute, s.paid_per_second
            )
        )

    def authenticate(self, token: str) -> BotState | None:
        """The bot a token belongs to, None when the token is malformed or not its owner's."""
        match = TOKEN_PATTERN.match(token)
        if match is None:
            return None
        bot = self.bot(int(match.group(1)))
        return bot if bot.claim(token) else None

    def webhook_changed(self, bot: BotState) -> None:
        """Tell the delivery engine (and waiting pollers) that a webhook changed."""
        bot.updates.changed.notify()
        for listener in self.webhook_listeners:
            listener(bot)

    def bot(self, bot_id: int) -> BotState:
        """The bot with this id, created on first mention."""
        bot = self.bots.get(bot_id)
        if bot is None:
            bot = self.bots[bot_id] = BotState(bot_id, self.settings)
        return bot
