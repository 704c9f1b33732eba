"""Getting updates: setWebhook, deleteWebhook, getWebhookInfo and getUpdates.

setWebhook with a URL may be called once a second (else 429 `Too Many Requests: retry after 1`;
deleting is not limited) and validates like Telegram: an HTTPS URL (no scheme means https) on
port 443, 80, 88 or 8443, an IPv4 address that is not reserved, a secret token of 1-256
`A-Za-z0-9_-`, a PEM certificate of at most 3 MB uploaded as a file, `max_connections` clamped
to 1-100.

Intended difference: Telegram refuses webhooks on private and loopback addresses; the sandbox
accepts loopback ones (127.0.0.0/8) so that a gateway on the same machine can receive updates.
Other private or reserved addresses are refused with Telegram's `IP address X is reserved`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from gateway.constants import (
    SECRET_TOKEN_ALPHABET,
    SECRET_TOKEN_MAX_LENGTH,
    WEBHOOK_DEFAULT_MAX_CONNECTIONS,
    WEBHOOK_MAX_CONNECTIONS_RANGE,
    WEBHOOK_PORTS,
)
from gateway.sandbox.calls import Call, MethodTable
from gateway.sandbox.params import UploadedFile
from gateway.sandbox.replies import (
    ApiError,
    Described,
    bad_request,
    conflict,
    too_many_requests,
)
from gateway.sandbox.state import BotState, WebhookConfig
from gateway.sandbox.updates import read_allowed_updates

METHODS = MethodTable()
MAX_CERTIFICATE_BYTES = 3 * 1024 * 1024
RESOLVE_TIMEOUT_SECONDS = 5.0
#: getUpdates with the offset of the previous call: its least timeout within this many seconds,
#: and the window in which its limit drops to 1 (Telegram's guard against busy polling).
BUSY_POLL_TIMEOUT_SECONDS = 3.0
BUSY_POLL_LIMIT_WINDOW_SECONDS = 0.5
#: What Telegram's server answers a setWebhook that came too early (it allows one a second).
SET_WEBHOOK_RETRY_AFTER = 1
WEBHOOK_ACTIVE = (
    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
    "webhook first"
)
TERMINATED_BY_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
TERMINATED_BY_WEBHOOK = "Conflict: terminated by setWebhook request"


def _bad_webhook(reason: str) -> ApiError:
    return bad_request(f"bad webhook: {reason}")


def check_ip(address: str) -> None:
    """Telegram's address rules, loopback excepted (see the module docstring)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise _bad_webhook("Invalid IP address specified") from None
    if ip.version != 4:
        raise _bad_webhook("IPv6-only addresses are not allowed")
    if not ip.is_global and not ip.is_loopback:
        raise _bad_webhook(f"IP address {address} is reserved")


async def _resolve(host: str, port: int) -> str:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, family=socket.AF_INET)
    except (OSError, TimeoutError):
        raise _bad_webhook("Failed to resolve host: Name or service not known") from None
    address = str(infos[0][4][0])
    check_ip(address)
    return address


def _throttle(bot: BotState, interval: float) -> None:
    """At most one setWebhook with a URL per second, checked before anything else (as in
    Telegram's `process_set_webhook_query`): an early call is 429 `retry after 1` and does not
    move the window; a refused or repeated URL does."""
    now = time.monotonic()
    if now < bot.next_set_webhook_at:
        raise too_many_requests(SET_WEBHOOK_RETRY_AFTER)
    bot.next_set_webhook_at = now + interval


def _certificate(call: Call) -> bytes | None:
    upload: UploadedFile | None = call.params.file("certificate")
    if upload is None:
        return None
    if len(upload.data) > MAX_CERTIFICATE_BYTES:
        raise bad_request(f"certificate size is too big ({len(upload.data)} bytes)")
    try:
        ssl.create_default_context(cadata=upload.data.decode("ascii"))
    except (ValueError, ssl.SSLError):
        raise _bad_webhook("Failed to set custom certificate file") from None
    return upload.data


def _secret_token(call: Call) -> str | None:
    secret = call.params.string("secret_token")
    if not secret:
        return None
    if len(secret) > SECRET_TOKEN_MAX_LENGTH:
        raise bad_request("secret token is too long")
    if not set(secret) <= SECRET_TOKEN_ALPHABET:
        raise bad_request("secret token contains unallowed characters")
    return secret


def _apply_options(call: Call, allowed: Any) -> None:
    bot = call.bot
    if allowed is not None:
        bot.updates.allowed = read_allowed_updates(allowed)
    if call.params.boolean("drop_pending_updates"):
        bot.updates.drop_all()


def _stop_poller(bot: BotState, reason: str | None) -> None:
    if bot.poller is not None and not bot.poller.done():
        bot.poller.set_result(reason)


def _delete(call: Call) -> Described:
    _apply_options(call, call.params.json("allowed_updates", "allowed_updates"))
    if call.bot.webhook is None:
        return Described(True, "Webhook is already deleted")
    call.bot.webhook = None
    call.sandbox.webhook_changed(call.bot)
    return Described(True, "Webhook was deleted")


@METHODS.method("setWebhook")
async def set_webhook(call: Call) -> Described:
    """Set, keep or (with an empty URL) remove the bot's webhook."""
    params, bot = call.params, call.bot
    url = params.string("url").strip()
    if not url:
        return _delete(call)
    _throttle(bot, call.sandbox.settings.set_webhook_interval_seconds)
    secret = _secret_token(call)
    allowed = params.json("allowed_updates", "allowed_updates")
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise bad_request("invalid webhook URL specified") from None
    host = parts.hostname
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise bad_request("invalid webhook URL specified")
    if parts.scheme.lower() != "https":
        raise _bad_webhook("An HTTPS URL must be provided for webhook")
    if port not in WEBHOOK_PORTS:
        raise _bad_webhook("Webhook can be set up only on ports 80, 88, 443 or 8443")
    ip_address = params.string("ip_address").strip() or None
    if ip_address is not None:
        check_ip(ip_address)
    certificate = _certificate(call)
    low, high = WEBHOOK_MAX_CONNECTIONS_RANGE
    max_connections = params.integer("max_connections", WEBHOOK_DEFAULT_MAX_CONNECTIONS)
    max_connections = min(max(max_connections, low), high)
    current = bot.webhook
    if (
        current is not None
        and current.url == url
        and certificate is None
        and current.certificate is None
        and current.max_connections == max_connections
        and current.secret_token == secret
        and (ip_address is None or ip_address == current.ip_address)
    ):
        _apply_options(call, allowed)
        return Described(True, "Webhook is already set")
    resolved = ip_address
    if resolved is None and _is_ip(host):
        check_ip(host)
        resolved = host
    elif resolved is None:
        resolved = await _resolve(host, port)
    bot.webhook_versions += 1
    bot.webhook = WebhookConfig(
        url=url,
        host=host,
        port=port,
        certificate=certificate,
        ip_address=ip_address,
        max_connections=max_connections,
        secret_token=secret,
        version=bot.webhook_versions,
        resolved_ip=resolved,
    )
    bot.last_error_date = bot.last_error_message = None
    _apply_options(call, allowed)
    _stop_poller(bot, TERMINATED_BY_WEBHOOK)
    call.sandbox.webhook_changed(bot)
    return Described(True, "Webhook was set")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@METHODS.method("deleteWebhook")
async def delete_webhook(call: Call) -> Described:
    """Remove the webhook (optionally dropping pending updates)."""
    return _delete(call)


@METHODS.method("getWebhookInfo")
async def get_webhook_info(call: Call) -> dict[str, Any]:
    """The webhook's URL, state and last delivery error."""
    return call.bot.webhook_info()


def _busy_poll_guard(bot: BotState, offset: int, limit: int, timeout: float) -> tuple[int, float]:
    """Telegram's server slows a client that asks for the same offset again and again: within
    3 s of the previous call a timeout under 3 s becomes 3 s, within 0.5 s the limit becomes 1
    (`process_get_updates_query`)."""
    now = time.monotonic()
    if offset == bot.previous_poll_offset:
        elapsed = now - bot.previous_poll_at
        if timeout < BUSY_POLL_TIMEOUT_SECONDS and elapsed < BUSY_POLL_TIMEOUT_SECONDS:
            timeout = BUSY_POLL_TIMEOUT_SECONDS
        if elapsed < BUSY_POLL_LIMIT_WINDOW_SECONDS:
            limit = 1
    bot.previous_poll_offset, bot.previous_poll_at = offset, now
    return limit, timeout


@METHODS.method("getUpdates")
async def get_updates(call: Call) -> list[dict[str, Any]]:
    """Long polling: confirm by `offset`, wait up to `timeout` s for updates."""
    bot, params = call.bot, call.params
    if bot.webhook is not None:
        raise conflict(WEBHOOK_ACTIVE)
    offset = params.integer("offset")
    limit = min(max(params.integer("limit", 100), 1), 100)
    timeout = min(max(params.integer("timeout"), 0), call.sandbox.settings.max_poll_timeout_seconds)
    limit, timeout = _busy_poll_guard(bot, offset, limit, timeout)
    allowed = params.json("allowed_updates", "allowed_updates")
    if allowed is not None:
        bot.updates.allowed = read_allowed_updates(allowed)
    _stop_poller(bot, TERMINATED_BY_POLL)
    loop = asyncio.get_running_loop()
    poller: asyncio.Future[str | None] = loop.create_future()
    bot.poller = poller
    deadline = loop.time() + timeout
    try:
        while True:
            generation = bot.updates.changed.generation
            updates = bot.updates.poll(offset, limit)
            remaining = deadline - loop.time()
            if updates or remaining <= 0 or poller.done() or call.sandbox.closing:
                break
            waiter = asyncio.ensure_future(bot.updates.changed.wait(generation, remaining))
            either: list[asyncio.Future[Any]] = [waiter, poller]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
            if bot.webhook is not None and not poller.done():
                raise ApiError(409, TERMINATED_BY_WEBHOOK)
    finally:
        if bot.poller is poller:
            bot.poller = None
    if poller.done() and (reason := poller.result()) is not None:
        raise ApiError(409, reason)
    return [update.body() for update in updates]
