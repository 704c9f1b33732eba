"""The Telegram webhook route: authenticate the push, parse the Update, hand it to the bot.

Telegram retries an update for hours until it gets a 2xx, so once the request is authentic and
well-formed it is always acknowledged, even when a handler fails (the failure is logged).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Sequence

from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from aiohttp import web
from pydantic import ValidationError

from gateway import constants as c
from gateway import keys
from gateway.http import error_response

logger = logging.getLogger(__name__)


async def handle_update(request: web.Request) -> web.Response:
    """`POST {webhook_path}`: one Update from Telegram."""
    app = request.app
    config = app[keys.CONFIG]
    guard = app[WEBHOOK_SOURCES]
    if guard.enabled:
        source = guard.client_address(request.remote, request.headers.getall("X-Forwarded-For", []))
        if not guard.allowed(source):
            logger.warning("webhook call from %s refused: not an allowed source address", source)
            return error_response(403, "forbidden", "source address not allowed")
    presented = request.headers.get(c.SECRET_TOKEN_HEADER, "").encode()
    expected = config.secret_token.reveal().encode()
    if not hmac.compare_digest(presented, expected):
        logger.warning("webhook call from %s refused: wrong or missing secret", request.remote)
        return error_response(401, "unauthorized", "wrong or missing secret token")
    if request.content_type != "application/json":
        return error_response(415, "unsupported_media_type", "updates are application/json")
    body = await request.read()
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        update = Update.model_validate(data, context={"bot": app[keys.BOT]})
    except (ValueError, RecursionError, ValidationError):
        return error_response(400, "invalid_update", "the body is not a JSON Update")
    try:
        event_type = update.event_type
    except UpdateTypeLookupError:
        # No type this aiogram knows (e.g. only `update_id`): nothing would handle it, and a 500
        # would make Telegram retry it for hours.
        app[keys.METRICS].updates.labels("unknown").inc()
        logger.warning("update %d has no known type; acknowledged, ignored", update.update_id)
        return web.json_response({"ok": True})
    app[keys.METRICS].updates.labels(event_type).inc()
    try:
        await app[keys.DISPATCHER].feed_update(app[keys.BOT], update)
    except Exception:
        logger.exception("handling update %d failed; acknowledged anyway", update.update_id)
    return web.json_response({"ok": True})


class SourceGuard:
    """Which addresses may call the webhook, seen through trusted reverse proxies."""

    def __init__(
        self, allowed: Sequence[str], trusted_proxies: Sequence[str], *, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in allowed]
        self._proxies = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def client_address(self, remote: str | None, forwarded: Sequence[str]) -> str | None:
        """The caller: the peer, or, behind trusted proxies, the last untrusted hop."""
        hops = [remote or ""]
        if self._trusted(remote):
            chain = [hop.strip() for header in forwarded for hop in header.split(",")]
            hops = [*chain, remote or ""]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop or None
        return hops[0] or None

    def allowed(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._allowed)

    def _trusted(self, address: str | None) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self._proxies)


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address or "")
    except ValueError:
        return None


WEBHOOK_SOURCES = web.AppKey("webhook_sources", SourceGuard)


def add_routes(app: web.Application, path: str) -> None:
    """Mount the webhook at `path`, with its source-address guard when enabled."""
    telegram = app[keys.CONFIG].telegram
    app[WEBHOOK_SOURCES] = SourceGuard(
        telegram.webhook_allowed_networks or c.TELEGRAM_SOURCE_NETWORKS,
        telegram.trusted_proxies,
        enabled=telegram.webhook_ip_allowlist,
    )
    app.router.add_post(path, handle_update)
