"""The Telegram webhook route: authenticate the push, parse the Update, hand it to the bot.

Telegram retries an update for hours until it gets a 2xx, and holds back the updates behind
it meanwhile. So once the request is authentic and its body a JSON object with an integer
`update_id`, it is acknowledged: when a handler fails (logged), and when aiogram cannot
validate the update (a dead letter; the handlers get what can be read of it, see
gateway/rawupdate.py). Each update is handled once: a re-send (same id and content) is
acknowledged and skipped, and the dedup record is committed in the same transaction as the
commands the handling produced, before the 2xx.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from aiohttp import web
from pydantic import ValidationError

from gateway import constants as c
from gateway import inbound, keys, rawupdate
from gateway.http import error_response
from gateway.inbound import ignorable_stranger
from gateway.queue.base import FailedUpdate, UpdateRecord

logger = logging.getLogger(__name__)
#: The handlers' logger: a stranger's update is logged there whichever path it takes.
inbound_logger = logging.getLogger(inbound.__name__)
#: Telegram reads nothing but the status; one body for every acknowledgement.
_OK = b'{"ok": true}'


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
    except (ValueError, RecursionError):
        data = None
    number = rawupdate.update_id(data)
    if number is None:
        return error_response(
            400, "invalid_update", "the body is not a JSON object with an integer update_id"
        )
    assert isinstance(data, dict)
    stranger = ignorable_stranger(data, config.allowed_users, config.telegram.refusal_text)
    if stranger is not None:
        app[keys.METRICS].updates.labels("message").inc()
        if inbound_logger.isEnabledFor(logging.INFO):
            inbound_logger.info(
                "ignored message update %d from user %d: not allowed", number, stranger
            )
        return web.Response(body=_OK, content_type="application/json")
    await _accept(app, data, number, body)
    return web.Response(body=_OK, content_type="application/json")


async def _accept(app: web.Application, data: dict[str, Any], number: int, body: bytes) -> None:
    """Handle an update once: validate it (or salvage what it can), feed the bot, and store
    what the handling produced together with the update's dedup record."""
    bot, outbox = app[keys.BOT], app[keys.OUTBOX]
    received_at = time.time()
    digest = rawupdate.digest(data, body)
    if await app[keys.QUEUE].update_seen(bot.id, number, digest):
        app[keys.METRICS].updates_repeated.inc()
        logger.info("update %d was handled already; acknowledged, not handled again", number)
        return
    failure: FailedUpdate | None = None
    try:
        update: Update | None = Update.model_validate(data, context={"bot": bot})
    except (ValidationError, RecursionError) as exc:
        update, failure = _salvage(app, data, number, exc, received_at, body)
    with outbox.collecting() as commands:
        if update is not None:
            await _feed(app, update)
    record = UpdateRecord(bot.id, number, digest, received_at, failure)
    if not await outbox.submit_handled(record, commands):
        logger.info("update %d was handled by a concurrent copy; this one changes nothing", number)


def _salvage(
    app: web.Application,
    data: dict[str, Any],
    number: int,
    exc: ValidationError | RecursionError,
    received_at: float,
    body: bytes,
) -> tuple[Update | None, FailedUpdate]:
    """An update aiogram cannot validate: count it, say once where it failed, and rebuild the
    part the handlers read (see gateway/rawupdate.py)."""
    bot = app[keys.BOT]
    app[keys.METRICS].updates_unparsed.inc()
    where = rawupdate.first_failure(exc)
    usable = rawupdate.reduced(data)
    update = None
    if usable is not None:
        try:
            update = Update.model_validate(usable, context={"bot": bot})
        except (ValidationError, RecursionError):
            usable = None
    handled = rawupdate.describe(usable)
    logger.warning(
        "update %d (%s) is not valid for aiogram at %s; acknowledged, kept as a dead letter, %s",
        number,
        rawupdate.kind(data),
        where,
        handled,
    )
    text = body.decode("utf-8", "replace")
    return update, FailedUpdate(bot.id, number, received_at, where, handled, text)


async def _feed(app: web.Application, update: Update) -> None:
    """Hand one update to the dispatcher; a handler's failure is logged, not raised."""
    try:
        event_type = update.event_type
    except UpdateTypeLookupError:
        # No type this aiogram knows (e.g. only `update_id`): nothing would handle it, and a
        # non-2xx answer would make Telegram retry it for hours.
        app[keys.METRICS].updates.labels("unknown").inc()
        logger.warning("update %d has no known type; acknowledged, ignored", update.update_id)
        return
    app[keys.METRICS].updates.labels(event_type).inc()
    try:
        await app[keys.DISPATCHER].feed_update(app[keys.BOT], update)
    except Exception:
        logger.exception("handling update %d failed; acknowledged anyway", update.update_id)


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
