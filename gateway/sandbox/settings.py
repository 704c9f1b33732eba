"""The sandbox's settings: flood limits, webhook delivery timings and retention.

Every default is Telegram's own behaviour (or the closest documented value); tests shorten the
timings, never the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.constants import (
    TELEGRAM_CHAT_PER_SECOND,
    TELEGRAM_GLOBAL_PER_SECOND,
    TELEGRAM_GROUP_PER_MINUTE,
    TELEGRAM_PAID_PER_SECOND,
)


@dataclass(frozen=True)
class SandboxSettings:
    """How the sandbox behaves; build it once and hand it to `create_sandbox_app`.

    Flood limits (see `gateway.sandbox.limits` for the exact window algorithm):

    - ``global_per_second``: accepted sends per bot in any 1 s window.
    - ``chat_per_second``: accepted sends per chat in any 1 s window (below 1, one send per
      ``1 / chat_per_second`` seconds).
    - ``group_per_minute``: accepted sends per group chat (negative id) in any 60 s window.
    - ``paid_per_second``: with ``allow_paid_broadcast``, sends above ``global_per_second`` are
      accepted up to this many per bot in any 1 s window (all sends counted), for 0.1 Star
      each from the bot's balance; 0: paid broadcast not enabled (the flag changes nothing).

    Webhook delivery (see `gateway.sandbox.delivery`):

    - ``retry_base_seconds``: the delay before the second retry of a failed update; the first
      retry is immediate, later ones double it up to ``retry_cap_seconds``.
    - ``webhook_timeout_seconds``: read timeout of one webhook request.
    - ``webhook_connect_timeout_seconds``: TCP + TLS connection timeout.
    - ``update_ttl_seconds``: undelivered updates older than this are dropped (24 h).

    setWebhook:

    - ``set_webhook_interval_seconds``: one setWebhook with a URL per this many seconds and bot
      (Telegram: 1 s); an earlier call is 429 `retry after 1` whatever the interval.

    Other:

    - ``max_poll_timeout_seconds``: upper bound of getUpdates' long-polling ``timeout``.
    - ``group_privacy``: the bots' privacy mode; in groups they only see commands, mentions of
      themselves and replies to their messages (Telegram's default for new bots).
    - ``max_upload_bytes``: largest request body accepted (Telegram's 50 MB upload limit).
    - ``history_size``: how many delivered updates per bot the control API keeps for inspection.
    """

    global_per_second: float = TELEGRAM_GLOBAL_PER_SECOND
    chat_per_second: float = TELEGRAM_CHAT_PER_SECOND
    group_per_minute: int = TELEGRAM_GROUP_PER_MINUTE
    paid_per_second: float = TELEGRAM_PAID_PER_SECOND
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 60.0
    webhook_timeout_seconds: float = 60.0
    webhook_connect_timeout_seconds: float = 10.0
    update_ttl_seconds: float = 24 * 3600.0
    set_webhook_interval_seconds: float = 1.0
    max_poll_timeout_seconds: float = 50.0
    group_privacy: bool = True
    max_upload_bytes: int = 50 * 1024 * 1024
    history_size: int = 1000

    def __post_init__(self) -> None:
        for name in ("global_per_second", "chat_per_second", "group_per_minute"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxSettings.{name} must be positive")
        if not self.paid_per_second >= 0:
            raise ValueError("SandboxSettings.paid_per_second must be 0 (off) or positive")
        if self.retry_base_seconds < 0 or self.retry_cap_seconds < 0:
            raise ValueError("SandboxSettings retry timings must not be negative")
        if self.set_webhook_interval_seconds < 0:
            raise ValueError("SandboxSettings.set_webhook_interval_seconds must not be negative")
        if self.webhook_timeout_seconds <= 0 or self.webhook_connect_timeout_seconds <= 0:
            raise ValueError("SandboxSettings webhook timeouts must be positive")
