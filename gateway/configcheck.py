"""Checks across the keys of one section, beyond what each value's type allows.

Each failure is a `ConfigError` naming the key at fault and the value it holds.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway import constants as c
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import (
        DeliverySettings,
        FloodSettings,
        MediaSettings,
        QueueSettings,
        ServerSettings,
        TelegramSettings,
    )


def validate_media(media: MediaSettings) -> None:
    _parse_networks(media.fetch_allowed_networks, "[media] fetch_allowed_networks")
    for key in ("max_upload_bytes", "max_photo_bytes", "max_bytes_in_flight"):
        if getattr(media, key) <= 0:
            raise ConfigError(f"[media] {key} must be a positive number of bytes")
    if media.max_bytes_in_flight < media.max_upload_bytes:
        raise ConfigError("[media] max_bytes_in_flight must be at least max_upload_bytes")
    if media.fetch_timeout <= 0:
        raise ConfigError("[media] fetch_timeout must be a positive number of seconds")


def validate_queue(queue: QueueSettings) -> None:
    if queue.retention < c.MIN_RETENTION_SECONDS:
        raise ConfigError(
            f"[queue] retention must be at least {c.MIN_RETENTION_SECONDS:g} second, "
            f"not {queue.retention:g}"
        )


def validate_flood(flood: FloodSettings) -> None:
    for key in ("global_per_second", "chat_per_second", "group_per_minute"):
        if not getattr(flood, key) > 0:
            raise ConfigError(f"[flood] {key} must be positive, not {getattr(flood, key):g}")
    # 1000/s is Telegram's paid-broadcast ceiling: above it every extra send would be a 429.
    if not 1 <= flood.paid_per_second <= c.TELEGRAM_PAID_PER_SECOND:
        raise ConfigError(
            f"[flood] paid_per_second must be between 1 and {c.TELEGRAM_PAID_PER_SECOND} "
            f"(Telegram's paid-broadcast ceiling), not {flood.paid_per_second:g}"
        )
    # The ceiling counts the free sends too: at or below the free rate nothing would be paid.
    if flood.paid_broadcast and flood.paid_per_second <= flood.global_per_second:
        raise ConfigError(
            f"[flood] paid_per_second ({flood.paid_per_second:g}) must be above "
            f"global_per_second ({flood.global_per_second:g}) with paid_broadcast on: it is "
            "the ceiling of all sends, free ones included"
        )


def validate_delivery(delivery: DeliverySettings) -> None:
    if delivery.max_text_length < 1:
        raise ConfigError(
            f"[delivery] max_text_length must be at least 1, not {delivery.max_text_length}"
        )


def validate(server: ServerSettings, telegram: TelegramSettings) -> None:
    if not 0 < server.port < 65536:
        raise ConfigError(f"[server] port must be between 1 and 65535, not {server.port}")
    if server.body_limit < 1024:
        raise ConfigError(
            f"[server] body_limit must be at least 1024 bytes, not {server.body_limit}"
        )
    for key in ("handshake_timeout", "head_timeout", "body_timeout", "idle_timeout"):
        if not getattr(server, key) > 0:
            raise ConfigError(f"[server] {key} must be above 0 seconds, not {getattr(server, key)}")
    if server.max_connections < 0:
        raise ConfigError(
            f"[server] max_connections must be 0 (derived) or more, not {server.max_connections}"
        )
    if not telegram.webhook_path.startswith("/") or " " in telegram.webhook_path:
        raise ConfigError(
            f"[telegram] webhook_path must start with '/' and contain no spaces, "
            f"not {telegram.webhook_path!r}"
        )
    low, high = c.WEBHOOK_MAX_CONNECTIONS_RANGE
    if not low <= telegram.max_connections <= high:
        raise ConfigError(
            f"[telegram] max_connections must be between {low} and {high}, "
            f"not {telegram.max_connections}"
        )
    for key in ("webhook_allowed_networks", "trusted_proxies"):
        for network in getattr(telegram, key):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    f"[telegram] {key}: {network!r} is not an IP network (e.g. 10.0.0.0/8)"
                ) from None
    _parse_networks(server.callback_allowed_networks, "[server] callback_allowed_networks")
    if not 0 < telegram.request_timeout <= c.MAX_BOT_API_TIMEOUT_SECONDS:
        raise ConfigError(
            f"[telegram] request_timeout must be more than 0 and at most "
            f"{c.MAX_BOT_API_TIMEOUT_SECONDS:g} seconds, not {telegram.request_timeout:g}"
        )
    api = urlsplit(telegram.api_base)
    if api.scheme not in {"http", "https"} or not api.hostname:
        raise ConfigError(f"[telegram] api_base must be an http(s) URL, not {telegram.api_base!r}")


def public_url(server: ServerSettings, *, sandbox_mode: bool) -> str:
    url = server.public_url
    if not url and not server.tls:
        raise ConfigError(
            "[server] public_url is required with tls = false: the https:// URL of the reverse "
            "proxy in front of the gateway, e.g. https://gateway.example.org:8443"
        )
    if not url:
        if not sandbox_mode:
            raise ConfigError(
                "[server] public_url is required with a bot token: the HTTPS URL Telegram "
                "uses to reach this server, e.g. https://203.0.113.7:8443"
            )
        url = sandbox_public_url(server)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"[server] public_url must be an https:// URL, not {url!r}")
    try:
        port = parts.port or 443
    except ValueError:
        raise ConfigError(f"[server] public_url has an invalid port: {url!r}") from None
    if port not in c.WEBHOOK_PORTS:
        raise ConfigError(
            f"[server] public_url port {port} is not allowed by Telegram "
            "(webhooks can use only ports 443, 80, 88 or 8443)"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"[server] public_url must not have a query or fragment: {url!r}")
    return url.rstrip("/")


def sandbox_public_url(server: ServerSettings) -> str:
    """Sandbox mode's public URL: the listener's own address (loopback for a wildcard)."""
    if server.port not in c.WEBHOOK_PORTS:
        raise ConfigError(
            f"[server] port {server.port}: the sandbox, like Telegram, delivers webhooks only "
            "to ports 443, 80, 88 or 8443; pick one of them"
        )
    host = server.host if server.host not in c.WILDCARD_HOSTS else c.SANDBOX_HOST
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{server.port}"


def _parse_networks(values: tuple[str, ...], key: str) -> None:
    """Check a list of networks; gateway.egress (and aiohttp) load only when a config does,
    not for `gateway token` or `gateway backup`, which read one path from the config file."""
    from gateway.egress import parse_networks

    parse_networks(values, key)
